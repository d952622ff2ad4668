import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'

import {
  classifyDisconnect,
  mapAck,
  mapEdit,
  mapLidAndPhone,
  mapMessage,
  mapReaction,
  mapRevoke,
  serializeKey,
  toIsoTimestamp
} from '../src/engines/webjs-normalize.js'

const require = createRequire(import.meta.url)
const wweb = require('whatsapp-web.js')
const Reaction = require('whatsapp-web.js/src/structures/Reaction.js')
const { MessageAck, WAState } = wweb

const SELF = { jid: '5511900000009@s.whatsapp.net', phone: '+5511900000009', lid: null }
const CUSTOMER_JID = '5511900000001@s.whatsapp.net'
const T_1719000000 = '2024-06-21T20:00:00.000Z'

// Builds a real whatsapp-web.js Message from the raw WhatsApp Web model data
// that the library serialises out of the page.
function webjsMessage ({ id = {}, ...fields } = {}) {
  const remote = id.remote ?? '5511900000001@c.us'
  const fromMe = id.fromMe ?? false
  const messageId = id.id ?? 'AC0001'
  return new wweb.Message({}, {
    id: { fromMe, remote, id: messageId, _serialized: `${fromMe}_${remote}_${messageId}`, ...id },
    from: fromMe ? '5511900000009@c.us' : remote,
    to: fromMe ? remote : '5511900000009@c.us',
    type: 'chat',
    body: 'hello',
    t: 1719000000,
    ...fields
  })
}

function map (fields, context = { self: SELF }) {
  return mapMessage(webjsMessage(fields), context)
}

describe('webjs constants', () => {
  it('maps every MessageAck value of the package', () => {
    const expected = {
      ACK_ERROR: 'failed',
      ACK_PENDING: null,
      ACK_SERVER: 'sent',
      ACK_DEVICE: 'delivered',
      ACK_READ: 'read',
      ACK_PLAYED: 'read'
    }
    for (const [name, value] of Object.entries(MessageAck)) {
      const message = webjsMessage({ id: { fromMe: true } })
      assert.equal(mapAck(message, value)?.status ?? null, expected[name], name)
    }
  })

  it('gives every WAState that disconnects an outcome', () => {
    const accepted = [WAState.CONNECTED, WAState.OPENING, WAState.PAIRING, WAState.TIMEOUT]
    for (const state of Object.values(WAState).filter(value => !accepted.includes(value))) {
      assert.ok(classifyDisconnect(state).reason, state)
    }
  })
})

describe('webjs message identities', () => {
  it('maps c.us chats to s.whatsapp.net', () => {
    const data = map({})

    assert.equal(data.chat_jid, CUSTOMER_JID)
    assert.equal(data.chat_type, 'direct')
    assert.equal(data.peer_phone, '+5511900000001')
    assert.equal(data.sender_jid, CUSTOMER_JID)
    assert.equal(data.sender_phone, '+5511900000001')
  })

  it('uses the looked-up phone of a LID sender', () => {
    const phoneForLid = new Map([['100000000000002@lid', '5511900000001@c.us']])
    const data = map(
      {
        id: { remote: '100000000000002@lid', id: 'AC0001' },
        body: 'Ok'
      },
      { self: SELF, phoneForLid }
    )

    assert.equal(data.gateway_message_id, 'false_100000000000002@lid_AC0001')
    assert.equal(data.chat_jid, '100000000000002@lid')
    assert.equal(data.peer_phone, '+5511900000001')
    assert.equal(data.peer_lid, '100000000000002@lid')
    assert.equal(data.sender_phone, '+5511900000001')
  })

  it('never turns an unresolved LID into a phone', () => {
    const data = map({ id: { remote: '100000000000002@lid' } })

    assert.equal(data.peer_phone, null)
    assert.equal(data.sender_phone, null)
    assert.equal(data.peer_lid, '100000000000002@lid')
  })

  it('reports a phone-typed message to the recipient', () => {
    const data = map({
      id: {
        fromMe: true,
        remote: '5511900000001@c.us',
        id: '3A0000000000000001',
        _serialized: 'true_5511900000001@c.us_3A0000000000000001'
      },
      body: 'On my way',
      notifyName: 'Loja'
    })

    assert.equal(data.gateway_message_id, 'true_5511900000001@c.us_3A0000000000000001')
    assert.equal(data.from_me, true)
    assert.equal(data.peer_jid, CUSTOMER_JID)
    assert.equal(data.peer_phone, '+5511900000001')
    assert.equal(data.sender_jid, SELF.jid)
    assert.equal(data.push_name, null)
    assert.equal(data.text, 'On my way')
    assert.equal(data.timestamp, T_1719000000)
  })

  it('strips a device suffix', () => {
    const data = map({ id: { remote: '525500000001:4@c.us' } })

    assert.equal(data.chat_jid, '525500000001@s.whatsapp.net')
    assert.equal(data.peer_phone, '+525500000001')
  })

  it('reads a Wid object as remote', () => {
    const remote = { server: 'c.us', user: '447700900001', _serialized: '447700900001@c.us' }
    const data = mapMessage(
      { id: { fromMe: false, remote, id: 'W1' }, type: 'chat', body: 'hi', timestamp: 1719000000 },
      { self: SELF }
    )

    assert.equal(data.chat_jid, '447700900001@s.whatsapp.net')
    assert.equal(data.gateway_message_id, 'false_447700900001@c.us_W1')
  })

  it('reads the push name of an inbound message', () => {
    assert.equal(map({ notifyName: 'Customer A' }).push_name, 'Customer A')
  })

  it('maps a group message with its author', () => {
    const data = map({
      id: { remote: '120363000000000002@g.us', participant: '5511900000003@c.us' },
      author: '5511900000003@c.us',
      body: 'bom dia'
    })

    assert.equal(data.chat_type, 'group')
    assert.equal(data.sender_phone, '+5511900000003')
    assert.equal(data.peer_jid, null)
  })

  it('never makes a sender of a group JID', () => {
    const data = map({
      id: { remote: '5511900000004-1500000000@g.us' },
      author: '5511900000004-1500000000@g.us'
    })

    assert.equal(data.sender_jid, null)
    assert.equal(data.sender_phone, null)
  })
})

describe('webjs ignored messages', () => {
  it('drops a status post', () => {
    const message = webjsMessage({
      id: { remote: 'status@broadcast' },
      author: '5511900000001@c.us',
      isStatusV3: true,
      broadcast: true
    })

    assert.equal(mapMessage(message), null)
  })

  it('drops a status post flagged only by isStatus', () => {
    const message = {
      id: { fromMe: false, remote: '5511900000001@c.us', id: 'S1' },
      isStatus: true,
      type: 'image',
      timestamp: 1719000000
    }

    assert.equal(mapMessage(message), null)
  })

  const chats = [
    ['a channel post', '120363000000000001@newsletter'],
    ['a broadcast list', '1719000000@broadcast'],
    ['an unknown server', '5511900000001@example.com']
  ]
  for (const [name, remote] of chats) {
    it(`drops ${name}`, () => {
      assert.equal(map({ id: { remote } }), null)
    })
  }

  const types = ['revoked', 'protocol', 'e2e_notification', 'gp2', 'notification_template', 'call_log']
  for (const type of types) {
    it(`drops a ${type} message`, () => {
      assert.equal(map({ type }), null)
    })
  }

  it('drops the subscriber chat with themself', () => {
    assert.equal(map({ id: { fromMe: true, remote: '5511900000009@c.us' } }), null)
  })

  it('drops a message without id', () => {
    assert.equal(mapMessage({ type: 'chat', body: 'x' }), null)
  })
})

describe('webjs message content', () => {
  it('keeps an image caption and media reference', () => {
    const data = map({
      type: 'image',
      directPath: '/v/t62.7118-24/example',
      caption: 'look',
      body: 'look',
      mimetype: 'image/jpeg',
      size: 52000,
      filehash: 'c2hhMjU2IG9mIHRoZSBpbWFnZQ=='
    })

    assert.equal(data.kind, 'image')
    assert.equal(data.text, 'look')
    assert.deepEqual(data.media, {
      mimetype: 'image/jpeg',
      filename: null,
      size: 52000,
      sha256: 'c2hhMjU2IG9mIHRoZSBpbWFnZQ=='
    })
  })

  it('never takes a thumbnail body as text', () => {
    const data = map({ type: 'image', body: '/9j/4AAQSkZJRgABAQAAAQABAAD' })
    assert.equal(data.text, null)
  })

  it('reads a document filename', () => {
    const data = map({
      type: 'document',
      directPath: '/v/doc',
      caption: 'Segue a nota',
      filename: 'invoice.pdf',
      mimetype: 'application/pdf'
    })

    assert.equal(data.kind, 'document')
    assert.equal(data.text, 'Segue a nota')
    assert.equal(data.metadata.filename, 'invoice.pdf')
  })

  it('maps a voice note to audio', () => {
    assert.equal(map({ type: 'ptt', directPath: '/v/a', body: '' }).kind, 'audio')
  })

  it('flags view-once and ephemeral messages', () => {
    const data = map({ type: 'image', isViewOnce: true, isEphemeral: true })

    assert.equal(data.metadata.is_view_once, true)
    assert.equal(data.metadata.is_ephemeral, true)
  })

  it('reads a location without its thumbnail', () => {
    const data = map({ type: 'location', lat: -23.55, lng: -46.63, loc: 'Loja Centro', body: '/9j/4AAQ' })

    assert.equal(data.kind, 'location')
    assert.equal(data.text, 'Loja Centro')
    assert.equal(data.metadata.latitude, -23.55)
  })

  it('reads a contact card', () => {
    const vcard = 'BEGIN:VCARD\nFN:Customer B\nEND:VCARD'
    const data = map({ type: 'vcard', body: vcard, vcardFormattedName: 'Customer B' })

    assert.equal(data.kind, 'contact')
    assert.equal(data.text, 'Customer B')
    assert.deepEqual(data.metadata.vcards, [vcard])
  })

  it('reads a button reply', () => {
    const data = map({ type: 'buttons_response', body: 'Yes, confirm', selectedButtonId: 'btn_yes' })

    assert.equal(data.kind, 'interactive_reply')
    assert.equal(data.text, 'Yes, confirm')
    assert.equal(data.metadata.selected_id, 'btn_yes')
  })

  it('reads a list reply', () => {
    const data = map({
      type: 'list_response',
      body: 'Plan B',
      listResponse: { singleSelectReply: { selectedRowId: 'row_b' } }
    })

    assert.equal(data.text, 'Plan B')
    assert.equal(data.metadata.selected_id, 'row_b')
  })

  it('reads a template button reply', () => {
    const data = map({ type: 'template_button_reply', body: 'Track order', selectedId: 'tpl_1' })

    assert.equal(data.kind, 'interactive_reply')
    assert.equal(data.metadata.selected_id, 'tpl_1')
  })

  it('maps a failed decryption to undecryptable', () => {
    const data = map({ type: 'ciphertext', body: '' })

    assert.equal(data.kind, 'undecryptable')
    assert.equal(data.text, null)
  })

  it('maps an unhandled type to unknown', () => {
    const data = map({ type: 'poll_creation', body: '', pollName: 'Lunch?' })

    assert.equal(data.kind, 'unknown')
    assert.equal(data.text, null)
  })

  it('reads the quoted id', () => {
    assert.equal(map({ quotedStanzaID: 'Q1', quotedMsg: { body: 'earlier' } }).quoted_id, 'Q1')
  })

  it('keeps emoji and RTL text exactly', () => {
    const body = 'Olá 👋🏽 👨‍👩‍👧‍👦 مرحبا\u200f!'
    assert.equal(map({ body }).text, body)
  })
})

describe('webjs acks', () => {
  function sentMessage (key = {}) {
    return webjsMessage({ id: { fromMe: true, id: '3EB0X1', ...key } })
  }

  it('maps ACK_READ 3 to read', () => {
    const ack = mapAck(sentMessage(), MessageAck.ACK_READ)

    assert.deepEqual(ack, {
      gateway_message_id: 'true_5511900000001@c.us_3EB0X1',
      chat_jid: CUSTOMER_JID,
      status: 'read',
      error: null,
      timestamp: null
    })
  })

  it('maps ACK_ERROR to failed', () => {
    assert.equal(mapAck(sentMessage(), MessageAck.ACK_ERROR).status, 'failed')
  })

  it('ignores acks on inbound messages', () => {
    const inbound = webjsMessage({ ack: -1 })
    assert.equal(mapAck(inbound, MessageAck.ACK_ERROR), null)
  })

  it('logs and ignores an unknown ack', () => {
    const lines = []
    const logger = { warn: (fields, message) => lines.push({ fields, message }) }

    assert.equal(mapAck(sentMessage(), -7, { logger }), null)
    assert.equal(lines[0].fields.ack, -7)
  })

  it('ignores acks of status posts', () => {
    assert.equal(mapAck(sentMessage({ remote: 'status@broadcast' }), MessageAck.ACK_READ), null)
  })
})

describe('webjs updates', () => {
  it('maps an edit with the new text', () => {
    const update = mapEdit(webjsMessage({ id: { id: 'MSG_A' } }), 'corrected text', 'typo text')

    assert.deepEqual(update, {
      gateway_message_id: 'false_5511900000001@c.us_MSG_A',
      chat_jid: CUSTOMER_JID,
      change: 'edited',
      text: 'corrected text'
    })
  })

  it('ignores a body change from empty', () => {
    assert.equal(mapEdit(webjsMessage(), 'now decrypted', ''), null)
  })

  it('ignores an unchanged body', () => {
    assert.equal(mapEdit(webjsMessage(), 'same', 'same'), null)
  })

  it('maps a revoke to the original id', () => {
    const revoked = webjsMessage({ id: { id: 'MSG_A' }, type: 'revoked', body: '' })

    assert.deepEqual(mapRevoke(revoked), {
      gateway_message_id: 'false_5511900000001@c.us_MSG_A',
      chat_jid: CUSTOMER_JID,
      change: 'revoked',
      text: null
    })
  })

  it('ignores revokes of status posts', () => {
    assert.equal(mapRevoke(webjsMessage({ id: { remote: 'status@broadcast' } })), null)
  })

  it('maps a reaction to its target', () => {
    const reaction = new Reaction({}, {
      msgKey: { id: 'R1' },
      parentMsgKey: {
        fromMe: true,
        remote: '5511900000001@c.us',
        id: '3EB0X1',
        _serialized: 'true_5511900000001@c.us_3EB0X1'
      },
      senderUserJid: '5511900000001@c.us',
      reactionText: '👍',
      timestamp: 1719000000
    })

    assert.deepEqual(mapReaction(reaction), {
      gateway_message_id: 'true_5511900000001@c.us_3EB0X1',
      chat_jid: CUSTOMER_JID,
      sender_jid: CUSTOMER_JID,
      emoji: '👍'
    })
  })

  it('maps a removed reaction to an empty emoji', () => {
    const reaction = new Reaction({}, {
      msgKey: { id: 'R2' },
      parentMsgKey: { fromMe: true, remote: '5511900000001@c.us', id: '3EB0X1' },
      senderUserJid: '5511900000001@c.us',
      reactionText: ''
    })

    assert.equal(mapReaction(reaction).emoji, '')
  })
})

describe('webjs disconnect reasons', () => {
  const outcomes = [
    ['LOGOUT', 'logged_out', 'device_removed'],
    [WAState.UNPAIRED, 'logged_out', 'device_removed'],
    [WAState.UNPAIRED_IDLE, 'logged_out', 'device_removed'],
    [WAState.CONFLICT, 'disconnected', 'replaced'],
    [WAState.TOS_BLOCK, 'disconnected', 'banned'],
    [WAState.SMB_TOS_BLOCK, 'disconnected', 'banned'],
    [WAState.PROXYBLOCK, 'disconnected', 'banned'],
    ['Max qrcode retries reached', 'disconnected', 'qr_timeout'],
    [WAState.DEPRECATED_VERSION, 'disconnected', 'fatal'],
    [WAState.UNLAUNCHED, 'disconnected', 'fatal'],
    ['something new', 'disconnected', 'fatal']
  ]
  for (const [reason, event, outcome] of outcomes) {
    it(`maps ${reason} to ${outcome}`, () => {
      const result = classifyDisconnect(reason)

      assert.equal(result.event, event)
      assert.equal(result.reason, outcome)
    })
  }

  it('ends a QR timeout in qr_expired', () => {
    assert.equal(classifyDisconnect('Max qrcode retries reached').state, 'qr_expired')
  })
})

describe('webjs helpers', () => {
  it('serialises a key without _serialized', () => {
    const key = {
      fromMe: false,
      remote: '120363000000000002@g.us',
      id: 'G1',
      participant: '5511900000003@c.us'
    }
    assert.equal(serializeKey(key), 'false_120363000000000002@g.us_G1_5511900000003@c.us')
  })

  it('maps LID and phone pairs', () => {
    const mappings = mapLidAndPhone([
      { lid: '100000000000002@lid', pn: '5511900000001@c.us' },
      { lid: '100000000000003@lid', pn: undefined }
    ])

    assert.deepEqual(mappings, [
      { lid: '100000000000002@lid', phone: '+5511900000001', jid: CUSTOMER_JID }
    ])
  })

  const timestamps = [
    [1719000000, T_1719000000],
    ['1719000000', T_1719000000],
    [1719000000000, T_1719000000],
    [null, null],
    [0, null],
    ['abc', null]
  ]
  for (const [value, expected] of timestamps) {
    it(`converts ${String(value)} to ${expected}`, () => {
      assert.equal(toIsoTimestamp(value), expected)
    })
  }
})
