// A small in-memory cache whose entries expire after a fixed time and whose
// size is capped (the oldest entry goes first). It also has the
// get/set/del/flushAll methods of Baileys' CacheStore, so it can serve as
// `msgRetryCounterCache`.

export class TtlCache {
  constructor ({ ttlMs, maxEntries, now = Date.now }) {
    this.ttlMs = ttlMs
    this.maxEntries = maxEntries
    this.now = now
    this.entries = new Map()
  }

  get (key) {
    const entry = this.entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key)
      return undefined
    }
    return entry.value
  }

  has (key) {
    return this.get(key) !== undefined
  }

  set (key, value) {
    this.entries.delete(key)
    this.entries.set(key, { value, expiresAt: this.now() + this.ttlMs })
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value)
    }
    return true
  }

  del (key) {
    this.entries.delete(key)
  }

  flushAll () {
    this.entries.clear()
  }

  /** Records `key` and returns whether it was already present. */
  seen (key) {
    if (this.has(key)) return true
    this.set(key, true)
    return false
  }
}
