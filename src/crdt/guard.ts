// The check every remote update passes before it is applied (doc-sync's validateUpdate): what the
// schema says is for good stays. A well-behaved peer never deletes a job entry, never sets a job's
// spec/events/outputs again, and never deletes an event (a job goes with a 'remove' event). Yjs
// would apply such an update from any farm member and spread it, so it is refused whole, with an
// error that names the job and what the update would have done.
//
// Two ways an update takes something away (yjs 13.6):
// - its delete set names items (checked against the local items it covers);
// - a new item set under a map key that already has a value deletes the old value when it is
//   integrated (Item.integrate: `this.left.delete(transaction)`), with no delete-set entry at all.
//
// Known gap: the parts of an update that need items this document has not seen yet (a delete of
// clocks past its state and not in the update; a new item whose neighbour or parent is missing) wait
// in Yjs's pending store and are applied when those items arrive, unchecked then. They are let
// through: refusing them would refuse a legitimate overwrite of an output record from a peer slightly
// ahead (its gossip update deletes, and sets a key over, a record still on its way here).

import * as Y from 'yjs'
import { isId } from './schema.ts'

/** A remote update would delete or replace what the farm document keeps for good. */
export class ForbiddenUpdateError extends Error {
  static override readonly name = 'ForbiddenUpdateError'
  override readonly name = 'ForbiddenUpdateError'
}

type Struct = Y.Item | Y.GC | Y.Skip
/** The update as Y.decodeUpdate reads it (doc-sync passes the one it made, to spare a decode). */
type Decoded = ReturnType<typeof Y.decodeUpdate>
/** What the guard reads of a Yjs type (any kind of type). */
type Type = { readonly _map: Map<string, Y.Item>; readonly _item: Y.Item | null }

/** Where a new item of an update lands: an existing local type (and key), or nowhere that exists here. */
type Place = { readonly parent: Type; readonly sub: string | null } | null

/** A struct an ID names, and whether it is this document's own (else: the update's). */
type Found = { readonly struct: Y.Item | Y.GC; readonly local: boolean }

/**
 * The validator for remote updates to `doc` (a farm document): throws ForbiddenUpdateError for one
 * that would delete or replace a job, a job's spec/events/outputs entry, or an event of a job.
 * Deletes in licenses and in a job's outputs (an overwritten record), and of the update's own items,
 * pass. Its cost: a decode of the update (none if given one), a lookup per new item and a visit per
 * local struct its delete set covers.
 */
export function updateGuard(doc: Y.Doc): (update: Uint8Array, decoded?: Decoded) => void {
  const kept = new Kept(doc.getMap('jobs'))
  return (update, decoded) => {
    const { structs, ds } = decoded ?? Y.decodeUpdate(update)
    refuseReplacements(doc, kept, structs)
    refuseDeletes(doc, kept, ds)
  }
}

/** What the schema keeps for good, told apart by where it sits in the document. */
class Kept {
  readonly jobs: Type

  constructor(jobs: Type) {
    this.jobs = jobs
  }

  isJobMap(t: unknown): t is Type {
    return t instanceof Y.Map && t._item !== null && t._item.parent === this.jobs
  }

  /** The entry under `key` of `parent` when it is a job or a job's entry, said for the log; else null. */
  entry(parent: Type, key: string | null): string | null {
    if (parent === this.jobs) return `job ${show(key)}`
    if (this.isJobMap(parent)) return `the ${show(key)} of job ${show(parent._item!.parentSub)}`
    return null
  }

  /** An item of `parent` when it is a job's events, said for the log; else null. */
  event(parent: unknown): string | null {
    const owner = parent instanceof Y.Array ? parent._item : null
    if (owner === null || owner.parentSub !== 'events' || !this.isJobMap(owner.parent)) return null
    return `events of job ${show(owner.parent._item!.parentSub)}`
  }
}

/** A new item set under a key that holds a value here deletes that value when integrated. */
function refuseReplacements(doc: Y.Doc, kept: Kept, structs: readonly Struct[]): void {
  const places = new Placer(doc, structs)
  for (const s of structs) {
    if (!(s instanceof Y.Item) || !places.isNew(s)) continue
    const place = places.of(s)
    if (place === null || place.sub === null) continue
    const current = place.parent._map.get(place.sub)
    if (current === undefined || current.deleted) continue // nothing left there to lose
    const what = kept.entry(place.parent, place.sub)
    if (what !== null) {
      throw new ForbiddenUpdateError(`the update would replace ${what}: a job's entries are set once`)
    }
  }
}

/** The delete set, against the local items it covers that are not deleted yet. */
function refuseDeletes(doc: Y.Doc, kept: Kept, ds: Decoded['ds']): void {
  for (const [client, ranges] of ds.clients) {
    const local = doc.store.clients.get(client)
    if (local === undefined) continue // none of its items here: the update's own, or pending
    const state = Y.getState(doc.store, client)
    // in clock order, and each local struct visited once however the ranges overlap
    const sorted = ranges.length < 2 ? ranges : [...ranges].sort((a, b) => a.clock - b.clock)
    let next = 0
    for (const { clock, len } of sorted) {
      // from `state` on: the update's own items (fine to delete) or not seen here (see the top)
      if (clock >= state) break
      const end = Math.min(clock + len, state)
      let i = Math.max(next, Y.findIndexSS(local, clock))
      for (; i < local.length; i++) {
        const s = local[i]!
        if (s.id.clock >= end) break
        if (s.deleted || !(s instanceof Y.Item)) continue // already gone here: the common case
        const parent = s.parent as Type
        const what = kept.entry(parent, s.parentSub) ?? kept.event(parent)
        if (what !== null) {
          throw new ForbiddenUpdateError(
            `the update would delete ${what}: a job goes with a 'remove' event, its log is append-only`,
          )
        }
      }
      next = i
    }
  }
}

/**
 * Resolves where the new items of one update would land, as Item.getMissing does: an item with an
 * origin (left) or right origin takes its neighbour's parent and key, one with neither names its
 * parent; a GC neighbour makes it a GC. Neighbours may be local or in the same update; chains within
 * the update (a run of appends, each after the one before) are followed without recursion, once.
 */
class Placer {
  private readonly doc: Y.Doc
  /** The update's structs per client, in clock order (as decodeUpdate gives them). */
  private readonly byClient = new Map<number, Struct[]>()
  private readonly memo = new Map<Y.Item, Place>()

  constructor(doc: Y.Doc, structs: readonly Struct[]) {
    this.doc = doc
    for (const s of structs) {
      const list = this.byClient.get(s.id.client)
      if (list === undefined) this.byClient.set(s.id.client, [s])
      else list.push(s)
    }
  }

  /** Not (all) in this document yet: Yjs skips what it has. */
  isNew(s: Struct): boolean {
    return s.id.clock + s.length > Y.getState(this.doc.store, s.id.client)
  }

  of(item: Y.Item): Place {
    const chain = new Set<Y.Item>()
    let cur = item
    let place: Place
    for (;;) {
      const known = this.memo.get(cur)
      if (known !== undefined) {
        place = known
        break
      }
      const step = this.step(cur)
      if (!(step instanceof Y.Item)) {
        place = step
        break
      }
      chain.add(cur)
      if (chain.has(step)) {
        place = null // a loop of origins never integrates
        break
      }
      cur = step
    }
    chain.add(cur)
    for (const c of chain) this.memo.set(c, place)
    return place
  }

  /** The item's place, or the item of the update it takes its place from. */
  private step(s: Y.Item): Place | Y.Item {
    const left = s.origin === null ? null : this.find(s.origin)
    const right = s.rightOrigin === null ? null : this.find(s.rightOrigin)
    // a neighbour not here: the item waits, pending (see the top of the file)
    if (left === undefined || right === undefined) return null
    if (left?.struct instanceof Y.GC || right?.struct instanceof Y.GC) return null
    const near = left ?? right
    if (near !== null) {
      const n = near.struct as Y.Item
      if (!near.local) return n
      return n.parent instanceof Y.AbstractType ? { parent: n.parent, sub: n.parentSub } : null
    }
    const p = s.parent as unknown
    if (typeof p === 'string') {
      const root = this.doc.share.get(p)
      return root === undefined ? null : { parent: root, sub: s.parentSub }
    }
    if (!(p instanceof Y.ID)) return null
    const owner = this.find(p)
    // a parent made by the same update is new: nothing in it to replace
    if (owner === undefined || !owner.local || !(owner.struct instanceof Y.Item)) return null
    const content = owner.struct.content
    return content instanceof Y.ContentType ? { parent: content.type, sub: s.parentSub } : null
  }

  /** The struct holding `id`: this document's when it has that clock, else the update's, else none. */
  private find(id: Y.ID): Found | undefined {
    const store = this.doc.store
    if (id.clock < Y.getState(store, id.client)) {
      const local = store.clients.get(id.client)!
      return { struct: local[Y.findIndexSS(local, id.clock)]!, local: true }
    }
    const list = this.byClient.get(id.client)
    if (list === undefined) return undefined
    let lo = 0
    let hi = list.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const s = list[mid]!
      if (id.clock < s.id.clock) hi = mid - 1
      else if (id.clock >= s.id.clock + s.length) lo = mid + 1
      else return s instanceof Y.Skip ? undefined : { struct: s, local: false }
    }
    return undefined
  }
}

/** A key as the log shows it: a job id as is, anything else quoted and cut short. */
function show(key: string | null): string {
  if (key === null) return 'an entry without a key'
  return isId(key) ? key : JSON.stringify(String(key).slice(0, 64))
}
