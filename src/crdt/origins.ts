// Tagged transaction origins (as Hocuspocus does): every change to the farm document says where it
// came from, so an update is never echoed back to its sender and persistence knows what to store.

export type Origin =
  | { readonly kind: 'local' }
  | { readonly kind: 'gossip'; readonly peer: string }
  | { readonly kind: 'sync'; readonly peer: string }
  | { readonly kind: 'store' }

export const LOCAL: Origin = Object.freeze({ kind: 'local' })
export const STORE: Origin = Object.freeze({ kind: 'store' })

export function fromGossip(peer: string): Origin {
  return { kind: 'gossip', peer }
}

export function fromSync(peer: string): Origin {
  return { kind: 'sync', peer }
}

export function isOrigin(x: unknown): x is Origin {
  if (typeof x !== 'object' || x === null) return false
  const k = (x as { kind?: unknown }).kind
  return k === 'local' || k === 'gossip' || k === 'sync' || k === 'store'
}
