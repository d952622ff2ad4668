import assert from 'node:assert/strict'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'

import { FileAuthStore } from '../src/auth-store.js'
import { createLogger } from '../src/logger.js'
import { makeDataDir } from './helpers.js'

async function makeStore (t) {
  const dataDir = await makeDataDir(t)
  return { store: new FileAuthStore({ dataDir, logger: createLogger({ level: 'silent' }) }), dataDir }
}

describe('FileAuthStore', () => {
  it('reads back what it wrote', async (t) => {
    const { store } = await makeStore(t)
    const auth = store.forUser(1)
    await auth.set({ creds: '{"me":1}', 'pre-key-12': 'abc' })
    assert.equal(await auth.get('creds'), '{"me":1}')
    assert.equal(await auth.get('pre-key-12'), 'abc')
    assert.equal(await auth.get('missing'), null)
  })

  it('deletes a key set to null', async (t) => {
    const { store } = await makeStore(t)
    const auth = store.forUser(1)
    await auth.set({ creds: 'x' })
    await auth.set({ creds: null, other: null })
    assert.equal(await auth.get('creds'), null)
  })

  it('keeps names with dots and slashes inside the user folder', async (t) => {
    const { store, dataDir } = await makeStore(t)
    const auth = store.forUser(1)
    const names = ['../../escape', '..', '.', 'session-5511900000001.0', 'a/b', 'sender-key-120363@g.us::5511:3']
    for (const [index, name] of names.entries()) await auth.set({ [name]: `v${index}` })
    for (const [index, name] of names.entries()) assert.equal(await auth.get(name), `v${index}`)

    assert.deepEqual(await readdir(dataDir), ['auth'])
    assert.deepEqual(await readdir(join(dataDir, 'auth')), ['user_1'])
    const files = await readdir(join(dataDir, 'auth', 'user_1', 'keys'))
    assert.equal(files.length, names.length)
    for (const file of files) assert.doesNotMatch(file, /[./]/)
  })

  it('rejects an empty key name', async (t) => {
    const { store } = await makeStore(t)
    await assert.rejects(store.forUser(1).set({ '': 'x' }), TypeError)
  })

  it('leaves no temporary files behind', async (t) => {
    const { store, dataDir } = await makeStore(t)
    const auth = store.forUser(1)
    await Promise.all(Array.from({ length: 20 }, (_, index) => auth.set({ creds: `value ${index}` })))
    const files = await readdir(join(dataDir, 'auth', 'user_1', 'keys'))
    assert.deepEqual(files, ['creds'])
    assert.match(await auth.get('creds'), /^value \d+$/)
  })

  it('lists users with saved auth only', async (t) => {
    const { store, dataDir } = await makeStore(t)
    await store.forUser(12).set({ creds: 'x' })
    await store.forUser(3).set({ creds: 'x' })
    await mkdir(join(dataDir, 'auth', 'user_7', 'keys'), { recursive: true })
    await mkdir(join(dataDir, 'auth', 'not-a-user'), { recursive: true })
    await mkdir(join(dataDir, 'auth', 'user_9', 'engine'), { recursive: true })
    await writeFile(join(dataDir, 'auth', 'user_9', 'engine', 'profile'), 'x')
    assert.deepEqual(await store.list(), [3, 9, 12])
  })

  it('wipes one user and keeps the others', async (t) => {
    const { store } = await makeStore(t)
    await store.forUser(1).set({ creds: 'one' })
    await store.forUser(2).set({ creds: 'two' })
    await store.forUser(1).wipe()
    assert.equal(await store.has(1), false)
    assert.equal(await store.forUser(2).get('creds'), 'two')
    assert.deepEqual(await store.list(), [2])
  })

  it('ignores writes through a view made before a wipe', async (t) => {
    const { store } = await makeStore(t)
    const stale = store.forUser(1)
    await stale.set({ creds: 'old' })
    await store.wipe(1)
    await stale.set({ creds: 'late write' })
    assert.equal(await store.has(1), false)

    const fresh = store.forUser(1)
    await fresh.set({ creds: 'new' })
    assert.equal(await fresh.get('creds'), 'new')
  })

  it('gives each user an engine folder of their own', async (t) => {
    const { store } = await makeStore(t)
    assert.notEqual(store.forUser(1).dir, store.forUser(2).dir)
    assert.match(store.forUser(1).dir, /user_1[/\\]engine$/)
  })
})
