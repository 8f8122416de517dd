import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { bestClaim, reduceAttempts } from '../../src/crdt/reducer.ts'
import type { TaskEvent } from '../../src/crdt/schema.ts'
import { peerName } from './model.ts'
import { mulberry32, shuffle } from './prng.ts'
import { CLAIM, claimBeats, DONE, type Fact, QUEUE, RUN, View } from './view.ts'

const STAGES = ['QUEUE', 'CLAIM', 'RUN', 'DONE'] as const

/** A history one task can really have: claims, then starts and a done by claimers, or a requeue. */
function history(seed: number): Fact[] {
  const r = mulberry32(seed)
  const pick = (n: number) => Math.floor(r() * n)
  const facts: Fact[] = []
  const add = (f: Omit<Fact, 'id' | 'task' | 'host'>) =>
    facts.push({ ...f, id: facts.length, task: 0, host: null })
  let t = 0
  for (let attempt = 0; attempt < 4; attempt++) {
    const claimers = [...new Set(Array.from({ length: pick(4) }, () => pick(5)))]
    for (const p of claimers) add({ t: t++, origin: p, kind: 'claim', attempt, value: pick(3) })
    if (claimers.length === 0) return facts
    const starters = claimers.filter(() => r() < 0.5)
    for (const p of starters) add({ t: t++, origin: p, kind: 'start', attempt, value: pick(4) })
    const end = r()
    if (end < 0.3 && starters.length > 0) {
      add({ t: t++, origin: starters[pick(starters.length)]!, kind: 'done', attempt, value: 0 })
      if (r() < 0.3) add({ t: t++, origin: pick(5), kind: 'requeue', attempt, value: 0 })
      return facts
    }
    if (end < 0.5) return facts
    add({ t: t++, origin: pick(5), kind: 'requeue', attempt, value: 0 })
  }
  return facts
}

function asEvent(f: Fact): TaskEvent {
  const base = { kind: f.kind as TaskEvent['kind'], task: 0, attempt: f.attempt, peer: peerName(f.origin) }
  if (f.kind === 'claim') return { ...base, lc: 1, bid: f.value }
  if (f.kind === 'start') return { ...base, lc: f.value }
  if (f.kind === 'requeue') return { ...base, lc: 1, reason: 'dead' }
  return { ...base, lc: 1 }
}

function fold(facts: readonly Fact[]): View {
  const v = new View([], 1)
  for (const f of facts) v.apply(f)
  return v
}

describe('peer view', () => {
  it('claims the way bestClaim does: lowest bid, then lowest peer id', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ peer: fc.integer({ min: 0, max: 20 }), bid: fc.integer({ min: 0, max: 3 }) }), {
          minLength: 1,
        }),
        (claims) => {
          let best = -1
          let bestBid = 0
          for (const c of claims) {
            if (claimBeats(c.bid, c.peer, bestBid, best)) {
              best = c.peer
              bestBid = c.bid
            }
          }
          const events = claims.map(
            (c): TaskEvent => ({
              kind: 'claim',
              task: 0,
              attempt: 0,
              peer: peerName(c.peer),
              lc: 1,
              bid: c.bid,
            }),
          )
          assert.equal(peerName(best), bestClaim(events)?.peer)
        },
      ),
    )
  })

  it('agrees with reduceAttempts on real histories, in every order and with duplicates', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (seed, order) => {
        const facts = history(seed)
        const ref = reduceAttempts(facts.map(asEvent), 99)
        const mixed = shuffle(mulberry32(order), [...facts, ...facts.filter((_, i) => i % 3 === 0)])
        for (const v of [fold(facts), fold(mixed)]) {
          const stage = STAGES[v.stage[0]!]!
          assert.equal(stage, ref.state, JSON.stringify(facts))
          if (stage !== 'DONE') assert.equal(v.attempt[0], ref.attempt)
          if (stage === 'CLAIM') assert.equal(peerName(v.claimPeer[0]!), ref.owner)
          if (stage === 'RUN') assert.equal(peerName(v.runPeer[0]!), ref.owner)
        }
        assert.equal(fold(facts).key(), fold(mixed).key())
      }),
      { numRuns: 500 },
    )
  })

  it('keys equal views alike and tells a claimed task from a ready one', () => {
    const claim: Fact = { id: 0, t: 0, origin: 1, kind: 'claim', task: 0, attempt: 0, value: 1, host: null }
    const start: Fact = { ...claim, id: 1, kind: 'start', value: 0 }
    const a = fold([claim])
    assert.equal(a.stage[0], CLAIM)
    assert.notEqual(a.key(), fold([]).key())
    // claimed and running look the same to the scheduler (taken), done does not
    assert.equal(fold([claim, start]).stage[0], RUN)
    assert.equal(fold([claim, start]).key(), a.key())
    const done = fold([claim, start, { ...claim, id: 2, kind: 'done' }])
    assert.equal(done.stage[0], DONE)
    assert.notEqual(done.key(), a.key())
    assert.equal(fold([{ ...claim, kind: 'requeue' }]).stage[0], QUEUE)
  })
})
