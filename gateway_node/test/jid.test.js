import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import {
  jidKind,
  jidToPhone,
  normalizeJid,
  toUserJid,
  toWebjsChatId
} from '../src/jid.js'

describe('normalizeJid', () => {
  const cases = [
    ['5511900000001:3@s.whatsapp.net', '5511900000001@s.whatsapp.net'],
    ['5511900000001:3@c.us', '5511900000001@s.whatsapp.net'],
    ['5511900000001:0@s.whatsapp.net', '5511900000001@s.whatsapp.net'],
    ['525500000001:12@s.whatsapp.net', '525500000001@s.whatsapp.net'],
    ['100000000000001:38@lid', '100000000000001@lid'],
    ['100000000000002@lid', '100000000000002@lid'],
    ['5511900000001@c.us', '5511900000001@s.whatsapp.net'],
    ['447700900001@C.US', '447700900001@s.whatsapp.net'],
    ['5491100000001_1:5@s.whatsapp.net', '5491100000001@s.whatsapp.net'],
    [' 62811000001@s.whatsapp.net ', '62811000001@s.whatsapp.net'],
    ['120363000000000002@g.us', '120363000000000002@g.us'],
    ['5511900000004-1500000000@g.us', '5511900000004-1500000000@g.us'],
    ['status@broadcast', 'status@broadcast'],
    ['120363000000000001@newsletter', '120363000000000001@newsletter']
  ]
  for (const [input, expected] of cases) {
    it(`normalises ${input}`, () => {
      assert.equal(normalizeJid(input), expected)
    })
  }

  const invalid = [
    '',
    '   ',
    '@s.whatsapp.net',
    '@lid',
    '5511900000001',
    '5511900000001@',
    '123@38@lid',
    'abc@s.whatsapp.net',
    '+5511900000001@s.whatsapp.net',
    null,
    undefined,
    42
  ]
  for (const input of invalid) {
    it(`returns null for ${JSON.stringify(input)}`, () => {
      assert.equal(normalizeJid(input), null)
    })
  }
})

describe('jidKind', () => {
  const cases = [
    ['5511900000001@s.whatsapp.net', 'user'],
    ['5511900000001:3@c.us', 'user'],
    ['100000000000001:38@lid', 'lid'],
    ['120363000000000002@g.us', 'group'],
    ['5511900000004-1500000000@g.us', 'group'],
    ['status@broadcast', 'status'],
    ['1719000000@broadcast', 'broadcast'],
    ['120363000000000001@newsletter', 'newsletter'],
    ['5511900000001@call', 'unknown'],
    ['5511900000001@hosted', 'unknown'],
    ['5511900000001-1500000000@s.whatsapp.net', 'unknown'],
    ['@s.whatsapp.net', 'unknown'],
    ['', 'unknown'],
    [null, 'unknown']
  ]
  for (const [input, expected] of cases) {
    it(`classifies ${JSON.stringify(input)} as ${expected}`, () => {
      assert.equal(jidKind(input), expected)
    })
  }
})

describe('jidToPhone', () => {
  it('returns E.164 without the device suffix', () => {
    assert.equal(jidToPhone('5511900000001:3@s.whatsapp.net'), '+5511900000001')
  })

  it('accepts the c.us server', () => {
    assert.equal(jidToPhone('525500000001@c.us'), '+525500000001')
  })

  it('keeps a short Indonesian number', () => {
    assert.equal(jidToPhone('62811000001@s.whatsapp.net'), '+62811000001')
  })

  it('never turns a LID into a phone', () => {
    assert.equal(jidToPhone('100000000000001@lid'), null)
  })

  it('returns null for a group', () => {
    assert.equal(jidToPhone('5511900000004-1500000000@g.us'), null)
  })

  it('returns null for a newsletter', () => {
    assert.equal(jidToPhone('120363000000000001@newsletter'), null)
  })

  it('returns null for more than 15 digits', () => {
    assert.equal(jidToPhone('1234567890123456@s.whatsapp.net'), null)
  })

  it('returns null for the bare server', () => {
    assert.equal(jidToPhone('@s.whatsapp.net'), null)
  })
})

describe('toUserJid', () => {
  const valid = [
    ['+5511900000001', '5511900000001@s.whatsapp.net'],
    ['5511900000001', '5511900000001@s.whatsapp.net'],
    [' +55 (11) 90000-0001 ', '5511900000001@s.whatsapp.net'],
    ['0055 11 90000 0001', '5511900000001@s.whatsapp.net'],
    ['+55-11-90000-0001', '5511900000001@s.whatsapp.net'],
    ['55.11.90000.0001', '5511900000001@s.whatsapp.net'],
    ['tel:+5511900000001', '5511900000001@s.whatsapp.net'],
    ['+5511900000001@s.whatsapp.net', '5511900000001@s.whatsapp.net'],
    ['5511900000001:3@s.whatsapp.net', '5511900000001@s.whatsapp.net'],
    ['551100000001@c.us', '551100000001@s.whatsapp.net'],
    ['+62811000001', '62811000001@s.whatsapp.net'],
    ['+62 811 000 001', '62811000001@s.whatsapp.net'],
    ['+44 (0)7700 900001', '447700900001@s.whatsapp.net'],
    ['+39 06 0000 0001', '390600000001@s.whatsapp.net'],
    ['+447700900001', '447700900001@s.whatsapp.net'],
    ['+5491100000001', '5491100000001@s.whatsapp.net'],
    ['100000000000001:38@lid', '100000000000001@lid']
  ]
  for (const [input, expected] of valid) {
    it(`accepts ${JSON.stringify(input)}`, () => {
      assert.equal(toUserJid(input), expected)
    })
  }

  const invalid = [
    '+55 11 9OOOO-0001',
    '',
    '   ',
    '+',
    '0811 000 001',
    '1234567890123456',
    '123456',
    '120363000000000002@g.us',
    'status@broadcast',
    '120363000000000001@newsletter',
    '@s.whatsapp.net',
    'abc@lid',
    null
  ]
  for (const input of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => toUserJid(input), { code: 'GW_ERR_INVALID_RECIPIENT' })
    })
  }

  it('names the rejected value in the error message', () => {
    assert.throws(() => toUserJid('+55 11 9OOOO-0001'), /"\+55 11 9OOOO-0001"/)
  })
})

describe('toWebjsChatId', () => {
  it('maps a phone JID to c.us', () => {
    assert.equal(toWebjsChatId('5511900000001@s.whatsapp.net'), '5511900000001@c.us')
  })

  it('keeps a LID chat id', () => {
    assert.equal(toWebjsChatId('100000000000001:38@lid'), '100000000000001@lid')
  })

  it('keeps a group chat id', () => {
    assert.equal(toWebjsChatId('120363000000000002@g.us'), '120363000000000002@g.us')
  })

  it('rejects status broadcasts', () => {
    assert.throws(() => toWebjsChatId('status@broadcast'), {
      code: 'GW_ERR_INVALID_RECIPIENT'
    })
  })
})
