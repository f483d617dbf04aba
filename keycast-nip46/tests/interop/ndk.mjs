// Drives keycast's bunker with NDK's NDKNip46Signer and prints one JSON result line.
// Usage: node ndk.mjs <bunker-uri>
import WebSocket from 'ws'

// NDK looks for a global WebSocket when it loads, so install one before importing it.
globalThis.WebSocket = WebSocket
const { default: NDK, NDKEvent, NDKNip46Signer, NDKPrivateKeySigner } = await import('@nostr-dev-kit/ndk')

const uri = process.argv[2]
const relay = new URL(uri).searchParams.get('relay')
const result = {}
const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(what + ' timed out')), ms))
try {
  const ndk = new NDK({ explicitRelayUrls: [relay] })
  await ndk.connect(5000)
  const signer = NDKNip46Signer.bunker(ndk, uri, NDKPrivateKeySigner.generate())
  const user = await Promise.race([signer.blockUntilReady(), timeout(20000, 'connect')])
  result.pubkey = user.pubkey
  const event = new NDKEvent(ndk, { kind: 1, content: 'hello from NDK', created_at: 1700000000, tags: [['t', 'ndk']] })
  await Promise.race([event.sign(signer), timeout(20000, 'sign')])
  result.event = event.rawEvent()
  signer.stop()
} catch (e) {
  result.failure = e.message || String(e)
}
console.log(JSON.stringify(result))
process.exit(0)
