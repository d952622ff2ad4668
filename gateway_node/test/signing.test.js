import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'

import { SignatureError, sign, verify } from '../src/signing.js'

const vectors = JSON.parse(
  readFileSync(new URL('./fixtures/signing-vectors.json', import.meta.url), 'utf8')
)

function verifyCase (vector) {
  verify({
    header: vector.header,
    secrets: vector.secrets,
    method: vector.method,
    path: vector.path,
    body: Buffer.from(vector.body, 'utf8'),
    now: vector.now,
    maxAge: vectors.max_age
  })
}

describe('signing vectors shared with Django', () => {
  it('has cases to check', () => {
    assert.ok(vectors.cases.length >= 10)
  })

  for (const vector of vectors.cases) {
    it(vector.name, () => {
      if (vector.valid) {
        assert.doesNotThrow(() => verifyCase(vector))
        return
      }
      assert.throws(() => verifyCase(vector), (error) => {
        assert.ok(error instanceof SignatureError)
        assert.equal(error.reason, vector.error)
        return true
      })
    })
  }

  for (const vector of vectors.cases.filter((entry) => entry.valid && entry.now === 1719000000)) {
    it(`sign() reproduces the header: ${vector.name}`, () => {
      const header = sign({
        secret: vector.secrets[0],
        timestamp: 1719000000,
        method: vector.method,
        path: vector.path,
        body: vector.body
      })
      assert.equal(header, vector.header)
    })
  }
})

describe('verify', () => {
  it('accepts a string body the same as its UTF-8 bytes', () => {
    const body = '{"text":"Olá"}'
    const header = sign({ secret: 'k', timestamp: 100, method: 'post', path: '/send', body })
    assert.doesNotThrow(() => verify({ header, secrets: ['k'], method: 'POST', path: '/send', body: Buffer.from(body), now: 100 }))
  })

  it('accepts a header with surrounding whitespace', () => {
    const header = sign({ secret: 'k', timestamp: 100, method: 'GET', path: '/qr?user_id=1', body: '' })
    assert.doesNotThrow(() => verify({ header: ` ${header} `, secrets: ['k'], method: 'GET', path: '/qr?user_id=1', body: undefined, now: 100 }))
  })

  it('rejects a signature over a different query string', () => {
    const header = sign({ secret: 'k', timestamp: 100, method: 'GET', path: '/status?user_id=1', body: '' })
    assert.throws(
      () => verify({ header, secrets: ['k'], method: 'GET', path: '/status?user_id=2', body: '', now: 100 }),
      { reason: 'mismatch' }
    )
  })
})
