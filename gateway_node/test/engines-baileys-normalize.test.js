import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { DisconnectReason, proto } from 'baileys'

import {
  classifyClose,
  closeStatusCode,
  mapContactMappings,
  mapLidMapping,
  mapMessagesUpdate,
  mapMessagesUpsert,
  mapPhoneNumberShare,
  mapReceiptUpdate,
  mapWebMessage,
  toIsoTimestamp,
  unwrapContent
} from '../src/engines/baileys-normalize.js'

const SELF = {
  jid: '5511900000009@s.whatsapp.net',
  phone: '+5511900000009',
  lid: '100000000000099@lid'
}
const CUSTOMER_JID = '5511900000001@s.whatsapp.net'
const CUSTOMER_LID = '100000000000001@lid'
const T_1719000000 = '2024-06-21T20:00:00.000Z'
const { Status, StubType } = proto.WebMessageInfo

function webMessage ({ key = {}, ...fields } = {}) {
  return proto.WebMessageInfo.create({
    key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'MSG1', ...key },
    messageTimestamp: 1719000000,
    ...fields
  })
}

function mapOne (fields, context = { self: SELF }) {
  return mapWebMessage(webMessage(fields), context)
}

function mapMessage (fields, context) {
  const event = mapOne(fields, context)
  assert.equal(event?.type, 'message')
  return event.data
}

function recordingLogger () {
  const lines = []
  const record = level => (fields, message) => lines.push({ level, fields, message })
  return { lines, debug: record('debug'), warn: record('warn') }
}

describe('message identities', () => {
  it('takes the phone of a LID chat from remoteJidAlt', () => {
    const data = mapMessage({
      key: {
        remoteJid: CUSTOMER_LID,
        remoteJidAlt: CUSTOMER_JID,
        addressingMode: 'lid',
        id: '3EB0LID00001'
      },
      pushName: 'Customer A',
      message: { conversation: 'Oi' }
    })

    assert.equal(data.chat_jid, CUSTOMER_LID)
    assert.equal(data.chat_type, 'direct')
    assert.equal(data.peer_jid, CUSTOMER_LID)
    assert.equal(data.peer_phone, '+5511900000001')
    assert.equal(data.peer_lid, CUSTOMER_LID)
    assert.equal(data.sender_jid, CUSTOMER_LID)
    assert.equal(data.sender_phone, '+5511900000001')
    assert.equal(data.sender_lid, CUSTOMER_LID)
    assert.equal(data.push_name, 'Customer A')
  })

  it('leaves the phone null for a LID chat without alternate', () => {
    const data = mapMessage({
      key: { remoteJid: CUSTOMER_LID, id: '3EB0LID00001' },
      message: { conversation: 'Oi' }
    })

    assert.equal(data.peer_phone, null)
    assert.equal(data.sender_phone, null)
    assert.equal(data.peer_lid, CUSTOMER_LID)
    assert.equal(data.sender_lid, CUSTOMER_LID)
  })

  it('reads the baileys 6.7 senderPn field', () => {
    const data = mapMessage({
      key: { remoteJid: '100000000000002@lid', senderPn: '525500000001@s.whatsapp.net' },
      message: { conversation: 'Hola' }
    })

    assert.equal(data.peer_phone, '+525500000001')
    assert.equal(data.peer_lid, '100000000000002@lid')
  })

  it('reads the LID of a phone chat from senderLid', () => {
    const data = mapMessage({
      key: { remoteJid: '447700900001@s.whatsapp.net', senderLid: '100000000000005:2@lid' },
      message: { conversation: 'Hello' }
    })

    assert.equal(data.peer_phone, '+447700900001')
    assert.equal(data.peer_lid, '100000000000005@lid')
  })

  it('ignores an alternate of the same kind as the chat', () => {
    const data = mapMessage({
      key: { remoteJid: CUSTOMER_LID, remoteJidAlt: '100000000000007@lid' },
      message: { conversation: 'Oi' }
    })

    assert.equal(data.peer_phone, null)
    assert.equal(data.peer_lid, CUSTOMER_LID)
  })

  const suffixed = [
    ['5511900000001:3@s.whatsapp.net', CUSTOMER_JID, '+5511900000001'],
    ['5511900000001:0@s.whatsapp.net', CUSTOMER_JID, '+5511900000001'],
    ['5491100000001:21@s.whatsapp.net', '5491100000001@s.whatsapp.net', '+5491100000001'],
    ['100000000000001:38@lid', CUSTOMER_LID, null]
  ]
  for (const [remoteJid, chatJid, phone] of suffixed) {
    it(`strips the device suffix of ${remoteJid}`, () => {
      const data = mapMessage({ key: { remoteJid }, message: { conversation: 'hi' } })

      assert.equal(data.chat_jid, chatJid)
      assert.equal(data.peer_jid, chatJid)
      assert.equal(data.peer_phone, phone)
    })
  }

  it('strips the device suffix of the alternate', () => {
    const data = mapMessage({
      key: { remoteJid: '100000000000001:38@lid', remoteJidAlt: '5511900000001:3@s.whatsapp.net' },
      message: { conversation: 'hi' }
    })

    assert.equal(data.peer_phone, '+5511900000001')
  })
})

describe('ignored chats', () => {
  it('drops a status post and its participant', () => {
    const event = mapOne({
      key: {
        remoteJid: 'status@broadcast',
        participant: CUSTOMER_JID,
        id: 'ST01'
      },
      message: { imageMessage: { caption: 'Promo hoje!', mimetype: 'image/jpeg' } }
    })

    assert.equal(event, null)
  })

  const ignored = [
    ['a channel post', '120363000000000001@newsletter'],
    ['a broadcast list', '1719000000@broadcast'],
    ['a call', '5511900000001@call'],
    ['an unknown server', '5511900000001@example.com'],
    ['a hosted device', '5511900000001:99@hosted']
  ]
  for (const [name, remoteJid] of ignored) {
    it(`drops ${name}`, () => {
      const event = mapOne({
        key: { remoteJid, id: 'NL01' },
        message: { extendedTextMessage: { text: 'New post from a channel' } }
      })

      assert.equal(event, null)
    })
  }

  it('drops a key with an empty id', () => {
    assert.equal(mapOne({ key: { id: '' }, message: { conversation: 'x' } }), null)
  })

  it('drops a key without id', () => {
    assert.equal(mapOne({ key: { id: undefined }, message: { conversation: 'x' } }), null)
  })

  it('drops a bare server JID', () => {
    const event = mapOne({ key: { remoteJid: '@s.whatsapp.net' }, message: { conversation: 'x' } })
    assert.equal(event, null)
  })

  it('drops a message without key', () => {
    assert.equal(mapWebMessage({ message: { conversation: 'x' } }), null)
  })

  it('drops the subscriber chat with themself', () => {
    const event = mapOne({
      key: { remoteJid: '5511900000009:4@s.whatsapp.net', fromMe: true },
      message: { conversation: 'note to self' }
    })

    assert.equal(event, null)
  })

  it('logs why a message was ignored', () => {
    const logger = recordingLogger()
    mapOne(
      { key: { remoteJid: '120363000000000001@newsletter' }, message: { conversation: 'x' } },
      { logger }
    )

    assert.equal(logger.lines[0].fields.reason, 'chat_newsletter')
  })
})

describe('group messages', () => {
  it('takes the sender phone from participantAlt', () => {
    const data = mapMessage({
      key: {
        remoteJid: '120363000000000002@g.us',
        participant: '100000000000003@lid',
        participantAlt: '5511900000003@s.whatsapp.net',
        id: 'GR01'
      },
      message: { conversation: 'bom dia' }
    })

    assert.equal(data.chat_type, 'group')
    assert.equal(data.chat_jid, '120363000000000002@g.us')
    assert.equal(data.sender_jid, '100000000000003@lid')
    assert.equal(data.sender_phone, '+5511900000003')
    assert.equal(data.sender_lid, '100000000000003@lid')
    assert.equal(data.text, 'bom dia')
  })

  it('has no peer in a group', () => {
    const data = mapMessage({
      key: { remoteJid: '120363000000000002@g.us', participant: '5511900000003@s.whatsapp.net' },
      message: { conversation: 'bom dia' }
    })

    assert.equal(data.peer_jid, null)
    assert.equal(data.peer_phone, null)
    assert.equal(data.peer_lid, null)
  })

  it('reads the baileys 6.7 participantPn field', () => {
    const data = mapMessage({
      key: {
        remoteJid: '120363000000000002@g.us',
        participant: '100000000000004:7@lid',
        participantPn: '62811000001@s.whatsapp.net'
      },
      message: { conversation: 'halo' }
    })

    assert.equal(data.sender_jid, '100000000000004@lid')
    assert.equal(data.sender_phone, '+62811000001')
  })

  it('never makes a sender of a legacy group JID', () => {
    const data = mapMessage({
      key: {
        remoteJid: '5511900000004-1500000000@g.us',
        participant: '5511900000004-1500000000@g.us',
        id: 'GR02'
      },
      message: { conversation: 'hello group' }
    })

    assert.equal(data.chat_type, 'group')
    assert.equal(data.sender_jid, null)
    assert.equal(data.sender_phone, null)
  })

  it('reads the sender from the message participant field', () => {
    const data = mapMessage({
      key: { remoteJid: '120363000000000002@g.us' },
      participant: '5511900000003:2@s.whatsapp.net',
      message: { conversation: 'from history' }
    })

    assert.equal(data.sender_jid, '5511900000003@s.whatsapp.net')
  })

  it('reports a group message from the phone as ours', () => {
    const data = mapMessage({
      key: {
        remoteJid: '120363000000000002@g.us',
        participant: '5511900000009:14@s.whatsapp.net',
        fromMe: true
      },
      message: { conversation: 'sent from the phone' }
    })

    assert.equal(data.from_me, true)
    assert.equal(data.sender_jid, SELF.jid)
  })
})

describe('message text', () => {
  it('reads conversation', () => {
    assert.equal(mapMessage({ message: { conversation: 'hello' } }).text, 'hello')
  })

  it('reads extendedTextMessage without the quoted text', () => {
    const data = mapMessage({
      message: {
        extendedTextMessage: {
          text: 'see https://example.com',
          contextInfo: {
            stanzaId: 'Q1',
            quotedMessage: { conversation: 'earlier' },
            expiration: 7776000
          }
        }
      }
    })

    assert.equal(data.kind, 'text')
    assert.equal(data.text, 'see https://example.com')
    assert.equal(data.quoted_id, 'Q1')
    assert.equal(data.metadata.is_ephemeral, true)
  })

  it('skips messageContextInfo when finding the type', () => {
    const data = mapMessage({
      message: { messageContextInfo: { deviceListMetadataVersion: 2 }, conversation: 'hi' }
    })

    assert.equal(data.kind, 'text')
    assert.equal(data.text, 'hi')
  })

  it('skips senderKeyDistributionMessage when finding the type', () => {
    const data = mapMessage({
      key: { remoteJid: '120363000000000002@g.us', participant: CUSTOMER_JID },
      message: {
        senderKeyDistributionMessage: { groupId: '120363000000000002@g.us' },
        messageContextInfo: { deviceListMetadataVersion: 2 },
        extendedTextMessage: { text: 'group hello' }
      }
    })

    assert.equal(data.kind, 'text')
    assert.equal(data.text, 'group hello')
  })

  it('has a null quoted id without context', () => {
    assert.equal(mapMessage({ message: { conversation: 'hello' } }).quoted_id, null)
  })

  it('keeps emoji, ZWJ sequences and RTL marks byte for byte', () => {
    const text = 'Olá 👋🏽 👨‍👩‍👧‍👦 مرحبا\u200f!'
    assert.equal(mapMessage({ message: { conversation: text } }).text, text)
  })

  it('keeps a 5000 character text whole', () => {
    const text = 'a'.repeat(5000)
    assert.equal(mapMessage({ message: { extendedTextMessage: { text } } }).text, text)
  })

  it('keeps 3000 thumbs up whole', () => {
    const text = '👍'.repeat(3000)
    assert.equal(mapMessage({ message: { conversation: text } }).text, text)
  })

  it('reads a message built with fromObject', () => {
    const message = proto.WebMessageInfo.fromObject({
      key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'FO1' },
      messageTimestamp: 1719000000,
      message: { extendedTextMessage: { text: 'from proto' } }
    })
    const { data } = mapWebMessage(message, { self: SELF })

    assert.equal(data.text, 'from proto')
    assert.equal(data.timestamp, T_1719000000)
  })
})

describe('wrapped content', () => {
  it('unwraps an ephemeral text', () => {
    const data = mapMessage({
      message: {
        ephemeralMessage: { message: { extendedTextMessage: { text: 'disappearing hi' } } }
      }
    })

    assert.equal(data.kind, 'text')
    assert.equal(data.text, 'disappearing hi')
    assert.equal(data.metadata.is_ephemeral, true)
    assert.equal(data.metadata.is_view_once, false)
  })

  it('unwraps a view-once V2 image caption', () => {
    const data = mapMessage({
      message: {
        viewOnceMessageV2: {
          message: { imageMessage: { caption: 'look once', mimetype: 'image/jpeg' } }
        }
      }
    })

    assert.equal(data.kind, 'image')
    assert.equal(data.text, 'look once')
    assert.equal(data.metadata.is_view_once, true)
    assert.equal(data.media.mimetype, 'image/jpeg')
  })

  it('unwraps a view-once V1 video', () => {
    const data = mapMessage({
      message: { viewOnceMessage: { message: { videoMessage: { caption: 'clip' } } } }
    })

    assert.equal(data.kind, 'video')
    assert.equal(data.text, 'clip')
    assert.equal(data.metadata.is_view_once, true)
  })

  it('unwraps a document with caption', () => {
    const data = mapMessage({
      message: {
        documentWithCaptionMessage: {
          message: {
            documentMessage: {
              fileName: 'invoice.pdf',
              mimetype: 'application/pdf',
              caption: 'Segue a nota'
            }
          }
        }
      }
    })

    assert.equal(data.kind, 'document')
    assert.equal(data.text, 'Segue a nota')
    assert.equal(data.metadata.filename, 'invoice.pdf')
    assert.equal(data.metadata.mimetype, 'application/pdf')
    assert.equal(data.media.filename, 'invoice.pdf')
  })

  it('unwraps view-once V2Extension audio inside ephemeral', () => {
    const data = mapMessage({
      message: {
        ephemeralMessage: {
          message: {
            viewOnceMessageV2Extension: { message: { audioMessage: { ptt: true } } }
          }
        }
      }
    })

    assert.equal(data.kind, 'audio')
    assert.equal(data.text, null)
    assert.equal(data.metadata.is_ephemeral, true)
    assert.equal(data.metadata.is_view_once, true)
  })

  it('flags an image marked viewOnce', () => {
    const data = mapMessage({ message: { imageMessage: { viewOnce: true } } })
    assert.equal(data.metadata.is_view_once, true)
  })

  it('stops unwrapping at the depth limit', () => {
    let message = { conversation: 'deep' }
    for (let i = 0; i < 50; i++) message = { ephemeralMessage: { message } }

    const { content, flags } = unwrapContent(message)

    assert.ok(content.ephemeralMessage)
    assert.equal(flags.is_ephemeral, true)
  })

  it('reports content past the depth limit as unknown', () => {
    let message = { conversation: 'deep' }
    for (let i = 0; i < 50; i++) message = { ephemeralMessage: { message } }

    assert.equal(mapMessage({ message }).kind, 'unknown')
  })

  it('drops a wrapper with no inner message', () => {
    assert.equal(mapOne({ message: { ephemeralMessage: {} } }), null)
  })
})

describe('media', () => {
  it('reports media without inlining it', () => {
    const message = proto.WebMessageInfo.fromObject({
      key: { remoteJid: CUSTOMER_JID, id: 'IMG1' },
      message: {
        imageMessage: {
          mimetype: 'image/jpeg',
          fileLength: 1234567,
          fileSha256: Buffer.from('sha256 of the image').toString('base64'),
          jpegThumbnail: Buffer.alloc(64).toString('base64'),
          url: 'https://mmg.whatsapp.net/example'
        }
      }
    })
    const { data } = mapWebMessage(message, { self: SELF })

    assert.deepEqual(data.media, {
      mimetype: 'image/jpeg',
      filename: null,
      size: 1234567,
      sha256: Buffer.from('sha256 of the image').toString('base64')
    })
  })

  it('maps a sticker', () => {
    assert.equal(mapMessage({ message: { stickerMessage: { mimetype: 'image/webp' } } }).kind, 'sticker')
  })

  it('maps a video note', () => {
    assert.equal(mapMessage({ message: { ptvMessage: { mimetype: 'video/mp4' } } }).kind, 'video')
  })

  it('has no media for text', () => {
    assert.equal(mapMessage({ message: { conversation: 'hi' } }).media, null)
  })
})

describe('other content kinds', () => {
  it('maps a location with its coordinates', () => {
    const data = mapMessage({
      message: {
        locationMessage: { degreesLatitude: -23.55, degreesLongitude: -46.63, name: 'Loja Centro' }
      }
    })

    assert.equal(data.kind, 'location')
    assert.equal(data.text, 'Loja Centro')
    assert.equal(data.metadata.latitude, -23.55)
    assert.equal(data.metadata.longitude, -46.63)
  })

  it('maps a contact card', () => {
    const vcard = 'BEGIN:VCARD\nVERSION:3.0\nFN:Customer B\nEND:VCARD'
    const data = mapMessage({ message: { contactMessage: { displayName: 'Customer B', vcard } } })

    assert.equal(data.kind, 'contact')
    assert.equal(data.text, 'Customer B')
    assert.deepEqual(data.metadata.vcards, [vcard])
  })

  it('maps an unhandled type to unknown', () => {
    const data = mapMessage({ message: { pollCreationMessage: { name: 'Lunch?' } } })

    assert.equal(data.kind, 'unknown')
    assert.equal(data.text, null)
  })

  it('drops a poll vote', () => {
    assert.equal(mapOne({ message: { pollUpdateMessage: { vote: {} } } }), null)
  })

  it('drops a message with only context info', () => {
    const event = mapOne({ message: { messageContextInfo: { deviceListMetadataVersion: 2 } } })
    assert.equal(event, null)
  })
})

describe('interactive replies', () => {
  const replies = [
    [
      'a button reply',
      { buttonsResponseMessage: { selectedButtonId: 'btn_yes', selectedDisplayText: 'Yes, confirm' } },
      'Yes, confirm',
      'btn_yes'
    ],
    [
      'a list reply',
      { listResponseMessage: { title: 'Plan B', singleSelectReply: { selectedRowId: 'row_b' } } },
      'Plan B',
      'row_b'
    ],
    [
      'a template button reply',
      { templateButtonReplyMessage: { selectedId: 'tpl_1', selectedDisplayText: 'Track order' } },
      'Track order',
      'tpl_1'
    ],
    [
      'an interactive response',
      {
        interactiveResponseMessage: {
          body: { text: 'Option 2' },
          nativeFlowResponseMessage: { paramsJson: '{"id":"opt2"}' }
        }
      },
      'Option 2',
      'opt2'
    ]
  ]
  for (const [name, message, text, selectedId] of replies) {
    it(`reads ${name}`, () => {
      const data = mapMessage({ message })

      assert.equal(data.kind, 'interactive_reply')
      assert.equal(data.text, text)
      assert.equal(data.metadata.selected_id, selectedId)
    })
  }

  it('keeps the text of a reply with invalid paramsJson', () => {
    const data = mapMessage({
      message: {
        interactiveResponseMessage: {
          body: { text: 'Option 3' },
          nativeFlowResponseMessage: { paramsJson: '{not json' }
        }
      }
    })

    assert.equal(data.text, 'Option 3')
    assert.equal(data.metadata.selected_id, null)
  })

  it('reads a button reply inside an ephemeral wrapper', () => {
    const data = mapMessage({
      message: {
        ephemeralMessage: {
          message: { buttonsResponseMessage: { selectedButtonId: 'b2', selectedDisplayText: 'No' } }
        }
      }
    })

    assert.equal(data.text, 'No')
    assert.equal(data.metadata.selected_id, 'b2')
  })
})

describe('stubs', () => {
  it('maps a message absent from the node to unavailable', () => {
    const data = mapMessage({
      key: { id: 'VO01' },
      pushName: 'Customer A',
      messageStubType: StubType.CIPHERTEXT,
      messageStubParameters: ['Message absent from node']
    })

    assert.equal(data.kind, 'unavailable')
    assert.equal(data.text, null)
    assert.equal(data.metadata.reason, 'absent_from_node')
  })

  const failures = [
    ['Bad MAC', 'bad_mac'],
    ['No session record', 'no_session'],
    ['SessionError: No session record', 'no_session'],
    ['No matching sessions found for message', 'no_session'],
    ['Invalid PreKey ID', 'decrypt_failed']
  ]
  for (const [parameter, reason] of failures) {
    it(`maps "${parameter}" to undecryptable`, () => {
      const data = mapMessage({
        key: { id: 'BM01' },
        messageStubType: StubType.CIPHERTEXT,
        messageStubParameters: [parameter]
      })

      assert.equal(data.kind, 'undecryptable')
      assert.equal(data.text, null)
      assert.equal(data.metadata.reason, reason)
    })
  }

  it('reads a stub type given by name', () => {
    const message = {
      key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'DUP1' },
      messageTimestamp: 1719000000,
      messageStubType: 'CIPHERTEXT',
      messageStubParameters: ['No session record']
    }

    assert.equal(mapWebMessage(message).data.kind, 'undecryptable')
  })

  it('maps a placeholder message to undecryptable', () => {
    const data = mapMessage({ message: { placeholderMessage: { type: 'MASK_LINKED_DEVICES' } } })

    assert.equal(data.kind, 'undecryptable')
    assert.equal(data.text, null)
  })

  it('maps a view-once message hidden from linked devices', () => {
    const data = mapMessage({ key: { isViewOnce: true } })

    assert.equal(data.kind, 'unavailable')
    assert.equal(data.metadata.is_view_once, true)
  })

  it('drops a group notification stub', () => {
    const event = mapOne({
      key: { remoteJid: '120363000000000002@g.us', participant: CUSTOMER_JID },
      messageStubType: StubType.GROUP_PARTICIPANT_ADD,
      messageStubParameters: [CUSTOMER_JID]
    })

    assert.equal(event, null)
  })
})

describe('revokes and edits', () => {
  it('maps a REVOKE to a revoked update of the target', () => {
    const event = mapOne({
      key: { id: 'RV01' },
      messageTimestamp: '1719000060',
      message: {
        protocolMessage: {
          type: 'REVOKE',
          key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'MSG_A' }
        }
      }
    })

    assert.deepEqual(event, {
      type: 'message_update',
      data: { gateway_message_id: 'MSG_A', chat_jid: CUSTOMER_JID, change: 'revoked', text: null }
    })
  })

  it('maps a REVOKE built with fromObject', () => {
    const message = proto.WebMessageInfo.fromObject({
      key: { remoteJid: '5511900000001:2@s.whatsapp.net', id: 'RV02' },
      message: { protocolMessage: { type: 'REVOKE', key: { id: 'MSG_B' } } }
    })
    const event = mapWebMessage(message)

    assert.equal(event.data.change, 'revoked')
    assert.equal(event.data.gateway_message_id, 'MSG_B')
    assert.equal(event.data.chat_jid, CUSTOMER_JID)
  })

  it('maps a MESSAGE_EDIT inside editedMessage', () => {
    const event = mapOne({
      key: { id: 'ED01' },
      message: {
        editedMessage: {
          message: {
            protocolMessage: {
              type: 'MESSAGE_EDIT',
              key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'MSG_A' },
              editedMessage: { conversation: 'corrected text' }
            }
          }
        }
      }
    })

    assert.deepEqual(event, {
      type: 'message_update',
      data: {
        gateway_message_id: 'MSG_A',
        chat_jid: CUSTOMER_JID,
        change: 'edited',
        text: 'corrected text'
      }
    })
  })

  it('maps a direct MESSAGE_EDIT with extended text', () => {
    const event = mapOne({
      message: {
        protocolMessage: {
          type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
          key: { id: 'MSG_C' },
          editedMessage: { extendedTextMessage: { text: 'fixed link' } }
        }
      }
    })

    assert.equal(event.data.change, 'edited')
    assert.equal(event.data.text, 'fixed link')
  })

  it('maps an edited caption', () => {
    const event = mapOne({
      message: {
        protocolMessage: {
          type: 'MESSAGE_EDIT',
          key: { id: 'MSG_D' },
          editedMessage: { imageMessage: { caption: 'new caption' } }
        }
      }
    })

    assert.equal(event.data.text, 'new caption')
  })

  it('maps an encrypted edit to edit_undecryptable', () => {
    const event = mapOne({
      key: { id: 'ED02' },
      message: { secretEncryptedMessage: { targetMessageKey: { id: 'MSG_A' }, secretEncType: 2 } }
    })

    assert.deepEqual(event, {
      type: 'message_update',
      data: {
        gateway_message_id: 'MSG_A',
        chat_jid: CUSTOMER_JID,
        change: 'edit_undecryptable',
        text: null
      }
    })
  })

  it('drops an encrypted pointer of unknown type', () => {
    const event = mapOne({
      message: { secretEncryptedMessage: { targetMessageKey: { id: 'MSG_A' }, secretEncType: 0 } }
    })

    assert.equal(event, null)
  })

  const otherTypes = [
    'EPHEMERAL_SETTING',
    'HISTORY_SYNC_NOTIFICATION',
    'APP_STATE_SYNC_KEY_SHARE',
    'PEER_DATA_OPERATION_REQUEST_RESPONSE_MESSAGE'
  ]
  for (const type of otherTypes) {
    it(`drops a ${type} protocol message`, () => {
      const event = mapOne({ message: { protocolMessage: { type, key: { id: 'MSG_A' } } } })
      assert.equal(event, null)
    })
  }

  it('drops a REVOKE without target id', () => {
    const event = mapOne({ message: { protocolMessage: { type: 'REVOKE', key: {} } } })
    assert.equal(event, null)
  })
})

describe('reactions', () => {
  it('maps a reaction to its target', () => {
    const event = mapOne({
      key: { id: 'RX01' },
      message: { reactionMessage: { key: { id: 'MSG_A', remoteJid: CUSTOMER_JID }, text: '👍' } }
    })

    assert.deepEqual(event, {
      type: 'reaction',
      data: {
        gateway_message_id: 'MSG_A',
        chat_jid: CUSTOMER_JID,
        sender_jid: CUSTOMER_JID,
        emoji: '👍'
      }
    })
  })

  it('maps a removed reaction to an empty emoji', () => {
    const event = mapOne({ message: { reactionMessage: { key: { id: 'MSG_A' }, text: '' } } })
    assert.equal(event.data.emoji, '')
  })

  it('names the subscriber as the sender of an own reaction', () => {
    const event = mapOne({
      key: { fromMe: true },
      message: { reactionMessage: { key: { id: 'MSG_A' }, text: '❤️' } }
    })

    assert.equal(event.data.sender_jid, SELF.jid)
  })
})

describe('messages.upsert', () => {
  it('keeps an offline append with its own time', () => {
    const events = mapMessagesUpsert({
      type: 'append',
      messages: [
        {
          key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'OFF1' },
          messageTimestamp: 1718999000,
          message: { conversation: 'are you open?' }
        }
      ]
    })

    assert.equal(events.length, 1)
    assert.equal(events[0].data.offline, true)
    assert.equal(events[0].data.timestamp, '2024-06-21T19:43:20.000Z')
  })

  it('marks notify messages as live', () => {
    const message = webMessage({ message: { conversation: 'hi' } })
    const events = mapMessagesUpsert({ type: 'notify', messages: [message] })
    assert.equal(events[0].data.offline, false)
  })

  it('maps every message of a batch', () => {
    const events = mapMessagesUpsert({
      type: 'notify',
      messages: [
        webMessage({ key: { id: 'A' }, message: { conversation: 'one' } }),
        webMessage({ key: { remoteJid: 'status@broadcast', id: 'B' }, message: { conversation: 'x' } }),
        webMessage({ key: { id: 'C' }, message: { conversation: 'three' } })
      ]
    })

    assert.deepEqual(events.map(event => event.data.gateway_message_id), ['A', 'C'])
  })

  it('reports a message typed on the phone as from_me', () => {
    const [event] = mapMessagesUpsert(
      {
        type: 'append',
        messages: [
          webMessage({
            key: { remoteJid: CUSTOMER_JID, fromMe: true, id: '3A0000000000000001' },
            pushName: 'Subscriber',
            message: { conversation: 'On my way' }
          })
        ]
      },
      { self: SELF }
    )

    assert.equal(event.data.from_me, true)
    assert.equal(event.data.peer_jid, CUSTOMER_JID)
    assert.equal(event.data.peer_phone, '+5511900000001')
    assert.equal(event.data.sender_jid, SELF.jid)
    assert.equal(event.data.sender_phone, SELF.phone)
    assert.equal(event.data.push_name, null)
  })

  it('skips own number as LID alternate', () => {
    const data = mapMessage({
      key: { remoteJid: CUSTOMER_LID, remoteJidAlt: '5511900000009@s.whatsapp.net', fromMe: true },
      message: { conversation: 'typed on the phone' }
    })

    assert.equal(data.peer_jid, CUSTOMER_LID)
    assert.equal(data.peer_phone, null)
  })

  it('returns nothing for an empty payload', () => {
    assert.deepEqual(mapMessagesUpsert({ type: 'notify' }), [])
  })
})

describe('toIsoTimestamp', () => {
  const values = [
    ['a number', 1719000000],
    ['a numeric string', '1719000000'],
    ['a Long object', { low: 1719000000, high: 0, unsigned: true }],
    ['milliseconds', 1719000000000],
    ['a bigint', 1719000000n]
  ]
  for (const [name, value] of values) {
    it(`reads ${name}`, () => {
      assert.equal(toIsoTimestamp(value), T_1719000000)
    })
  }

  it('reads a Long built by fromObject', () => {
    const message = proto.WebMessageInfo.fromObject({ messageTimestamp: 1719000000 })

    assert.equal(typeof message.messageTimestamp, 'object')
    assert.equal(toIsoTimestamp(message.messageTimestamp), T_1719000000)
  })

  it('reads a Long with the high word set', () => {
    // 2^32 seconds after the epoch.
    assert.equal(toIsoTimestamp({ low: 0, high: 1, unsigned: true }), '2106-02-07T06:28:16.000Z')
  })

  it('reads a Long whose low word is negative', () => {
    const ms = 1719000000123
    const low = ms % 2 ** 32 | 0
    const high = Math.floor(ms / 2 ** 32)

    assert.equal(toIsoTimestamp({ low, high, unsigned: false }), '2024-06-21T20:00:00.123Z')
  })

  const invalid = [null, undefined, 0, -5, 'abc', '', {}, Number.NaN, 1e20]
  for (const value of invalid) {
    it(`returns null for ${String(value)}`, () => {
      assert.equal(toIsoTimestamp(value), null)
    })
  }

  it('gives a null message timestamp when missing', () => {
    assert.equal(mapMessage({ messageTimestamp: null, message: { conversation: 'x' } }).timestamp, null)
  })
})

describe('messages.update', () => {
  function statusUpdate (status, key = {}) {
    return [{ key: { remoteJid: CUSTOMER_JID, fromMe: true, id: '3EB0X1', ...key }, update: { status } }]
  }

  const statuses = [
    [Status.ERROR, 'failed'],
    [Status.SERVER_ACK, 'sent'],
    [Status.DELIVERY_ACK, 'delivered'],
    [Status.READ, 'read'],
    [Status.PLAYED, 'read']
  ]
  for (const [code, status] of statuses) {
    it(`maps status ${code} to ${status}`, () => {
      const [ack] = mapMessagesUpdate(statusUpdate(code))
      assert.equal(ack.status, status)
    })
  }

  it('maps DELIVERY_ACK 3 to delivered, not read', () => {
    assert.equal(mapMessagesUpdate(statusUpdate(3))[0].status, 'delivered')
  })

  it('emits nothing for PENDING', () => {
    assert.deepEqual(mapMessagesUpdate(statusUpdate(Status.PENDING)), [])
  })

  it('reads a status given by name', () => {
    assert.equal(mapMessagesUpdate(statusUpdate('READ'))[0].status, 'read')
  })

  it('ignores statuses of messages we did not send', () => {
    assert.deepEqual(mapMessagesUpdate(statusUpdate(Status.ERROR, { fromMe: false })), [])
  })

  it('logs and ignores an unknown status', () => {
    const logger = recordingLogger()
    const acks = mapMessagesUpdate(statusUpdate(7), { logger })

    assert.deepEqual(acks, [])
    assert.equal(logger.lines[0].level, 'warn')
    assert.equal(logger.lines[0].fields.status, 7)
  })

  it('strips the device suffix of the chat', () => {
    const [ack] = mapMessagesUpdate(statusUpdate(3, { remoteJid: '5511900000001:75@s.whatsapp.net' }))
    assert.equal(ack.chat_jid, CUSTOMER_JID)
  })

  it('carries the id and no error for delivery', () => {
    const [ack] = mapMessagesUpdate(statusUpdate(3))

    assert.deepEqual(ack, {
      gateway_message_id: '3EB0X1',
      chat_jid: CUSTOMER_JID,
      status: 'delivered',
      error: null,
      timestamp: null
    })
  })

  it('carries the error code of a failed message', () => {
    const [ack] = mapMessagesUpdate([
      {
        key: { remoteJid: CUSTOMER_JID, fromMe: true, id: '3EB0X2' },
        update: { status: Status.ERROR, messageStubParameters: ['479'] }
      }
    ])

    assert.equal(ack.error, '479')
  })

  it('ignores updates without status', () => {
    const updates = [{ key: { remoteJid: CUSTOMER_JID, fromMe: true, id: 'X' }, update: { message: null } }]
    assert.deepEqual(mapMessagesUpdate(updates), [])
  })

  it('ignores status posts', () => {
    assert.deepEqual(mapMessagesUpdate(statusUpdate(4, { remoteJid: 'status@broadcast' })), [])
  })
})

describe('message-receipt.update', () => {
  const groupKey = { remoteJid: '120363000000000002@g.us', fromMe: true, id: '3EB0G1' }

  it('maps a read receipt with its time', () => {
    const [ack] = mapReceiptUpdate([
      { key: groupKey, receipt: { userJid: CUSTOMER_JID, readTimestamp: 1719000000 } }
    ])

    assert.equal(ack.status, 'read')
    assert.equal(ack.timestamp, T_1719000000)
  })

  it('maps a delivery receipt', () => {
    const [ack] = mapReceiptUpdate([
      { key: groupKey, receipt: { userJid: CUSTOMER_JID, receiptTimestamp: 1719000000 } }
    ])

    assert.equal(ack.status, 'delivered')
  })

  it('maps a played receipt to read', () => {
    const [ack] = mapReceiptUpdate([
      { key: groupKey, receipt: { userJid: CUSTOMER_JID, playedTimestamp: 1719000000 } }
    ])

    assert.equal(ack.status, 'read')
  })

  it('ignores receipts of messages we did not send', () => {
    const updates = [{ key: { ...groupKey, fromMe: false }, receipt: { readTimestamp: 1719000000 } }]
    assert.deepEqual(mapReceiptUpdate(updates), [])
  })

  it('ignores status broadcast receipts', () => {
    const updates = [{ key: { ...groupKey, remoteJid: 'status@broadcast' }, receipt: { readTimestamp: 1 } }]
    assert.deepEqual(mapReceiptUpdate(updates), [])
  })
})

describe('LID mappings', () => {
  it('maps lid-mapping.update', () => {
    assert.deepEqual(mapLidMapping({ lid: CUSTOMER_LID, pn: CUSTOMER_JID }), {
      lid: CUSTOMER_LID,
      phone: '+5511900000001',
      jid: CUSTOMER_JID
    })
  })

  it('strips device suffixes on both sides', () => {
    const mapping = mapLidMapping({ lid: '100000000000001:38@lid', pn: '5511900000001:3@s.whatsapp.net' })

    assert.equal(mapping.lid, CUSTOMER_LID)
    assert.equal(mapping.jid, CUSTOMER_JID)
  })

  it('accepts a bare phone number', () => {
    assert.equal(mapLidMapping({ lid: CUSTOMER_LID, pn: '5511900000001' }).jid, CUSTOMER_JID)
  })

  it('rejects two LIDs', () => {
    assert.equal(mapLidMapping({ lid: CUSTOMER_LID, pn: '100000000000002@lid' }), null)
  })

  it('rejects swapped sides', () => {
    assert.equal(mapLidMapping({ lid: CUSTOMER_JID, pn: CUSTOMER_LID }), null)
  })

  it('maps the baileys 6.7 phone number share', () => {
    assert.equal(mapPhoneNumberShare({ lid: CUSTOMER_LID, jid: CUSTOMER_JID }).phone, '+5511900000001')
  })

  it('maps contacts that name both ids', () => {
    const mappings = mapContactMappings([
      { id: CUSTOMER_LID, phoneNumber: CUSTOMER_JID },
      { id: '525500000001@s.whatsapp.net', lid: '100000000000006@lid' },
      { id: '100000000000007@lid' },
      { id: '120363000000000002@g.us' }
    ])

    assert.deepEqual(mappings.map(mapping => mapping.phone), ['+5511900000001', '+525500000001'])
  })
})

describe('connection close', () => {
  function boom (statusCode) {
    return { error: { message: 'closed', output: { statusCode } }, date: new Date() }
  }

  it('reads the status code from a Boom error', () => {
    assert.equal(closeStatusCode(boom(515)), 515)
  })

  it('reads no status code from a plain error', () => {
    assert.equal(closeStatusCode({ error: new Error('socket hang up') }), null)
  })

  it('reads no status code from end(undefined)', () => {
    assert.equal(closeStatusCode({ error: undefined }), null)
  })

  const policies = [
    [DisconnectReason.loggedOut, 'logout', 'device_removed'],
    [DisconnectReason.forbidden, 'fail', 'banned'],
    [DisconnectReason.connectionReplaced, 'fail', 'replaced'],
    [DisconnectReason.multideviceMismatch, 'fail', 'fatal'],
    [DisconnectReason.restartRequired, 'restart', 'restart'],
    [DisconnectReason.connectionClosed, 'reconnect', 'network'],
    [DisconnectReason.connectionLost, 'reconnect', 'network'],
    [DisconnectReason.unavailableService, 'reconnect', 'network'],
    [DisconnectReason.badSession, 'retry', 'network'],
    [419, 'retry', 'network'],
    [null, 'retry', 'network']
  ]
  for (const [statusCode, action, reason] of policies) {
    it(`handles ${statusCode} with ${action}`, () => {
      const decision = classifyClose({ statusCode, paired: true, qrShown: false })

      assert.equal(decision.action, action)
      assert.equal(decision.reason, reason)
    })
  }

  it('treats 408 after an unscanned QR as a QR timeout', () => {
    const decision = classifyClose({ statusCode: 408, paired: false, qrShown: true })
    assert.deepEqual(decision, { action: 'qr_timeout', reason: 'qr_timeout' })
  })

  it('treats 408 before any QR as a network drop', () => {
    const decision = classifyClose({ statusCode: 408, paired: false, qrShown: false })
    assert.equal(decision.action, 'reconnect')
  })
})
