// WhatsApp auth state per user, in files under WA_DATA_DIR/auth/user_<id>/.
//
// keys/    one file per name (creds, pre-key-12, ...), written atomically:
//          temporary file, fsync, rename, then fsync of the folder, so a
//          crash leaves either the old or the new value, never half of one.
// engine/  a folder an engine may fill itself (whatsapp-web.js keeps its
//          browser profile there).
//
// Names are opaque to the store. They are percent-encoded into file names
// that contain no `.` or `/`, so no name can reach outside keys/.
//
// TODO: a database-backed store with the same per-user members, so that
// another gateway node can take a user over without copying these files.

import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises'
import { join } from 'node:path'

const MAX_NAME_LENGTH = 200
const USER_FOLDER = /^user_([1-9]\d{0,15})$/

function fileName (name) {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new TypeError(`Auth key names are strings of 1 to ${MAX_NAME_LENGTH} characters, got ${JSON.stringify(name)}.`)
  }
  return encodeURIComponent(name).replace(
    /[.!~*'()]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`
  )
}

function isMissing (error) {
  return error.code === 'ENOENT'
}

async function hasEntries (folder) {
  try {
    const names = await readdir(folder)
    // Temporary files start with a dot and do not count as saved state.
    return names.some((name) => !name.startsWith('.'))
  } catch (error) {
    if (isMissing(error)) return false
    throw error
  }
}

async function syncFolder (folder) {
  const handle = await open(folder, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function writeAtomically (folder, file, value) {
  const temporary = join(folder, `.${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(temporary, 'w', 0o600)
  try {
    await handle.writeFile(value, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await rename(temporary, join(folder, file))
  } catch (error) {
    await unlink(temporary).catch(() => {})
    throw error
  }
}

export class FileAuthStore {
  #root
  #logger
  // userId -> promise of the last queued write or wipe of that user.
  #queues = new Map()
  // userId -> number of wipes so far. A view made before a wipe goes stale.
  #generations = new Map()

  constructor ({ dataDir, logger }) {
    this.#root = join(dataDir, 'auth')
    this.#logger = logger
  }

  userDir (userId) {
    return join(this.#root, `user_${userId}`)
  }

  /** The per-user view handed to an engine as `auth`. */
  forUser (userId) {
    const store = this
    const userDir = this.userDir(userId)
    const keysDir = join(userDir, 'keys')
    const generation = this.#generations.get(userId) ?? 0
    const isStale = () => (this.#generations.get(userId) ?? 0) !== generation

    return {
      dir: join(userDir, 'engine'),

      async get (name) {
        try {
          return await readFile(join(keysDir, fileName(name)), 'utf8')
        } catch (error) {
          if (isMissing(error)) return null
          throw error
        }
      },

      async set (entries) {
        const names = Object.keys(entries)
        for (const name of names) fileName(name)
        return store.#enqueue(userId, async () => {
          if (isStale()) {
            // The user was logged out, and a late write must not bring the
            // dead credentials back.
            store.#logger.warn({ userId, keys: names.length }, 'ignored an auth write that arrived after the auth was wiped')
            return
          }
          await mkdir(keysDir, { recursive: true, mode: 0o700 })
          await Promise.all(names.map((name) => {
            const value = entries[name]
            const file = fileName(name)
            if (value === null || value === undefined) {
              return unlink(join(keysDir, file)).catch((error) => {
                if (!isMissing(error)) throw error
              })
            }
            return writeAtomically(keysDir, file, String(value))
          }))
          await syncFolder(keysDir)
        })
      },

      has () {
        return store.has(userId)
      },

      wipe () {
        return store.wipe(userId)
      }
    }
  }

  /** True when the user has saved keys or engine files. */
  async has (userId) {
    const userDir = this.userDir(userId)
    if (await hasEntries(join(userDir, 'keys'))) return true
    return hasEntries(join(userDir, 'engine'))
  }

  /** Deletes all of one user's auth state; other users' stays untouched. */
  wipe (userId) {
    this.#generations.set(userId, (this.#generations.get(userId) ?? 0) + 1)
    return this.#enqueue(userId, async () => {
      await rm(this.userDir(userId), { recursive: true, force: true })
      this.#logger.info({ userId }, 'auth state wiped')
    })
  }

  /** User ids with saved auth state, in ascending order. */
  async list () {
    let names
    try {
      names = await readdir(this.#root)
    } catch (error) {
      if (isMissing(error)) return []
      throw error
    }

    const userIds = []
    for (const name of names) {
      const match = USER_FOLDER.exec(name)
      if (!match) continue
      const userId = Number(match[1])
      if (await this.has(userId)) userIds.push(userId)
    }
    return userIds.sort((a, b) => a - b)
  }

  #enqueue (userId, task) {
    const previous = this.#queues.get(userId) ?? Promise.resolve()
    const run = previous.catch(() => {}).then(task)
    this.#queues.set(userId, run)
    run.catch(() => {}).finally(() => {
      if (this.#queues.get(userId) === run) this.#queues.delete(userId)
    })
    return run
  }
}
