// Latency of nostr-tools' BunkerSigner against a bunker, one request in flight (issue 21;
// run by benches/benches/hot_path.rs). Prints one JSON line: per method the sorted
// round-trip times in milliseconds, or a failure.
// Usage: node bunker_latency.mjs <bunker-uri> <requests per method>
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'

useWebSocketImplementation(WebSocket)
globalThis.WebSocket = WebSocket

const [uri, countArg] = process.argv.slice(2)
const count = Number.parseInt(countArg, 10)
const result = {}
const pool = new SimplePool()
try {
  if (!(count > 0)) throw new Error('the request count must be a positive number')
  const bp = await parseBunkerInput(uri)
  if (!bp) throw new Error('nostr-tools cannot parse the bunker URI')
  const signer = BunkerSigner.fromBunker(generateSecretKey(), bp, { pool, skipSwitchRelays: true })
  await signer.connect()
  const user = await signer.getPublicKey()
  const peer = getPublicKey(generateSecretKey())
  const timed = async (call) => {
    const times = []
    // A few untimed first, so caches and connections are warm.
    for (let i = 0; i < count + 5; i++) {
      const start = process.hrtime.bigint()
      await call(i)
      if (i >= 5) times.push(Number(process.hrtime.bigint() - start) / 1e6)
    }
    return times.sort((a, b) => a - b)
  }
  result.sign_event = await timed(async (i) => {
    const e = await signer.signEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: `latency ${i}` })
    if (e.pubkey !== user) throw new Error('signed by another key')
  })
  result.nip44_encrypt = await timed((i) => signer.nip44Encrypt(peer, `latency ${i}`))
  await signer.close()
} catch (e) {
  result.failure = e.message || String(e)
}
pool.destroy()
console.log(JSON.stringify(result))
process.exit(0)
