// Drives keycast's bunker with nostr-tools' BunkerSigner and prints one JSON result line.
// Usage: node nostr_tools.mjs <bunker-uri>
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'
import * as nip44 from 'nostr-tools/nip44'
import * as nip04 from 'nostr-tools/nip04'

useWebSocketImplementation(WebSocket)
globalThis.WebSocket = WebSocket

const uri = process.argv[2]
const result = {}
const pool = new SimplePool()
try {
  const bp = await parseBunkerInput(uri)
  if (!bp) throw new Error('nostr-tools cannot parse the bunker URI')
  const signer = BunkerSigner.fromBunker(generateSecretKey(), bp, { pool, skipSwitchRelays: true })
  await signer.connect()
  result.pubkey = await signer.getPublicKey()
  result.event = await signer.signEvent({
    kind: 1,
    created_at: 1700000000,
    tags: [['t', 'keycast'], ['e', 'abc', '', 'root']],
    content: 'hello from nostr-tools ✓',
  })
  const peer = generateSecretKey()
  const peerPub = getPublicKey(peer)
  const ct44 = await signer.nip44Encrypt(peerPub, 'n44 ✓')
  result.nip44_to_peer = nip44.v2.decrypt(ct44, nip44.v2.utils.getConversationKey(peer, result.pubkey))
  const back44 = nip44.v2.encrypt('back44', nip44.v2.utils.getConversationKey(peer, result.pubkey))
  result.nip44_from_peer = await signer.nip44Decrypt(peerPub, back44)
  const ct04 = await signer.nip04Encrypt(peerPub, 'n04')
  result.nip04_to_peer = await nip04.decrypt(peer, result.pubkey, ct04)
  const back04 = await nip04.encrypt(peer, result.pubkey, 'back04')
  result.nip04_from_peer = await signer.nip04Decrypt(peerPub, back04)
  await signer.ping()
  result.ping = true
  result.switch_relays = await signer.sendRequest('switch_relays', [])
  await signer.logout()
  result.logout = true
  try {
    await Promise.race([
      signer.sendRequest('get_public_key', []).then(() => 'answered'),
      new Promise(resolve => setTimeout(() => resolve('timeout'), 3000)),
    ]).then(r => { result.after_logout = r })
  } catch (e) {
    result.after_logout = 'error: ' + (e.message || String(e))
  }
  await signer.close()
} catch (e) {
  result.failure = e.message || String(e)
}
pool.destroy()
console.log(JSON.stringify(result))
process.exit(0)
