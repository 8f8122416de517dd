// Yamux window updates as go-yamux and rust-yamux send them: once half of a stream's receive window
// has been used, not after every frame.
//
// @chainsafe/libp2p-yamux 7 answers each chunk a stream's reader takes with a WindowUpdate frame
// giving back what it used, however little. On the farm's long-lived streams (gossipsub's, one per
// peer, carrying heartbeats and document updates of a few hundred bytes) that is one more frame
// back for nearly every message: bench:render counted 276 window updates for 285 data frames in one
// job. Each is a Noise-sealed, farmnet-ciphered socket write on one side and a read, two decryptions
// and a decode on the other, and a wake-up of both event loops on a machine Blender keeps busy.
// go-yamux (segmentedBuffer.GrowTo: `if !force && delta < max/2`) and rust-yamux (PR #109) wait for
// half the window; the sender still has the other half to write into meanwhile, so nothing stalls,
// and a window that grows (the library's rule: used up within 4 round trips) grows at those moments.
//
// The library keeps its rule in YamuxStream.prototype.sendWindowUpdate, which the package exports
// (`@chainsafe/libp2p-yamux/stream`); this wraps it. An update that opens a stream (SYN or ACK) goes
// at once, as before. Should a later release rename the fields read here, the wrapper steps aside
// and the library's own rule applies (test/node/yamuxwindow.test.ts then fails on the count).

import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The fields of a YamuxStream this reads (private in its types, plain properties at run time). */
interface WindowFields {
  readonly state: StreamState
  readonly recvWindow?: unknown
  readonly recvWindowCapacity?: unknown
}

let installed = false

/** Makes every yamux stream of this process send window updates at half its window. Idempotent. */
export function halfWindowUpdates(): void {
  if (installed) return
  installed = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate(this: WindowFields): void }
  const send = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowFields): void {
    const { state, recvWindow: window, recvWindowCapacity: left } = this
    const opening = state === StreamState.Init || state === StreamState.SYNReceived
    if (!opening && typeof window === 'number' && typeof left === 'number' && window - left < window / 2) {
      return
    }
    send.call(this)
  }
}
