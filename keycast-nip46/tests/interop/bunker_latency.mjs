// Latency of nostr-tools' BunkerSigner against a bunker, one request in flight (issue 21;
// run by benches/benches/hot_path.rs). Prints one JSON line: per method the sorted
// round-trip times in milliseconds, and the client's own cost per request in this process
// (the median time to sign a request event and to verify a reply event), or a failure.
// Usage: node bunker_latency.mjs <bunker-uri> <requests per method>
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent, verifiedSymbol } from 'nostr-tools/pure'

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
  // What the client itself spends per request: it signs the request event and verifies
  // the reply event (a sign_event also verifies the event it gets back).
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const key = generateSecretKey()
  const sign = [], verify = []
  for (let i = 0; i < 25; i++) {
    const template = { kind: 24133, created_at: i, tags: [['p', peer]], content: 'x'.repeat(400) }
    let start = process.hrtime.bigint()
    const event = finalizeEvent(template, key)
    sign.push(Number(process.hrtime.bigint() - start) / 1e6)
    delete event[verifiedSymbol]
    start = process.hrtime.bigint()
    if (!verifyEvent(event)) throw new Error('the client cannot verify its own event')
    verify.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  result.client = { sign_ms: median(sign), verify_ms: median(verify) }
} catch (e) {
  result.failure = e.message || String(e)
}
pool.destroy()
console.log(JSON.stringify(result))
process.exit(0)
