// Client-initiated pairing with nostr-tools: shows a nostrconnect:// URI, waits in
// BunkerSigner.fromURI for keycast to pair, then uses the signer.
// Usage: node nostrconnect.mjs <relay-url>
// Prints {"uri": ...} once the client listens (the pairing reply is ephemeral, so it must
// not be sent earlier), then one JSON result line.
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, createNostrConnectURI } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'
import { bytesToHex } from 'nostr-tools/utils'

useWebSocketImplementation(WebSocket)
globalThis.WebSocket = WebSocket

const relay = process.argv[2]
const result = {}
const pool = new SimplePool()
try {
  const clientSecretKey = generateSecretKey()
  const uri = createNostrConnectURI({
    clientPubkey: getPublicKey(clientSecretKey),
    relays: [relay],
    secret: bytesToHex(generateSecretKey()).slice(0, 16),
    perms: ['sign_event:1', 'nip44_encrypt'],
    name: 'keycast interop',
  })
  const pairing = BunkerSigner.fromURI(clientSecretKey, uri, { pool }, 60000)
  pairing.catch(() => {}) // awaited below; avoids an unhandled rejection meanwhile
  await listening(pool)
  await new Promise(resolve => process.stdout.write(JSON.stringify({ uri }) + '\n', resolve))
  const signer = await pairing
  result.bunker_pubkey = signer.bp.pubkey
  result.pubkey = await signer.getPublicKey()
  result.event = await signer.signEvent({
    kind: 1,
    created_at: Math.floor(Date.now() / 1000),
    tags: [],
    content: 'hello from nostrconnect ✓',
  })
  await signer.close()
} catch (e) {
  result.failure = e.message || String(e)
}
pool.destroy()
console.log(JSON.stringify(result))
process.exit(0)

// Resolves once a subscription in the pool has its EOSE, i.e. the relay has registered it.
async function listening(pool) {
  for (let i = 0; i < 300; i++) {
    for (const r of pool.relays.values()) {
      for (const sub of r.openSubs.values()) if (sub.eosed) return
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error('fromURI did not subscribe within 30 s')
}
