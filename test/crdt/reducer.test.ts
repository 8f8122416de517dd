import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { type BaseView, reduceAttempts, reduceJobControl, reduceTask } from '../../src/crdt/reducer.ts'
import type { JobEvent, TaskEvent } from '../../src/crdt/schema.ts'

const peers = ['pA', 'pB', 'pC']

const taskEvent: fc.Arbitrary<TaskEvent> = fc
  .record({
    kind: fc.constantFrom<TaskEvent['kind']>(
      'claim',
      'claim',
      'start',
      'done',
      'fail',
      'requeue',
      'hold',
      'release',
      'cancel',
    ),
    attempt: fc.integer({ min: 0, max: 3 }),
    peer: fc.constantFrom(...peers),
    lc: fc.integer({ min: 1, max: 8 }),
    bid: fc.integer({ min: 0, max: 4 }),
    reason: fc.constantFrom('retry', 'dead', 'hold', 'boom'),
  })
  .map(({ kind, attempt, peer, lc, bid, reason }): TaskEvent => {
    const base = { kind, task: 0, attempt, peer, lc }
    if (kind === 'claim') return { ...base, bid }
    if (kind === 'requeue' || kind === 'fail') return { ...base, reason }
    return base
  })

/** A list of events and the same events in another order with some duplicated. */
const reordered = fc
  .array(taskEvent, { maxLength: 30 })
  .chain((evs) =>
    fc.tuple(
      fc.constant(evs),
      fc.shuffledSubarray(evs, { minLength: evs.length, maxLength: evs.length }),
      fc.subarray(evs),
    ),
  )
  .map(([evs, perm, dups]) => [evs, [...perm, ...dups]] as const)

const RANK: Record<BaseView['state'], number> = { QUEUE: 0, CLAIM: 1, RUN: 2, DONE: 3, FAIL: 3 }

describe('task reducer', () => {
  it('gives the same view for every order of the same events, duplicates included', () => {
    fc.assert(
      fc.property(reordered, fc.integer({ min: 1, max: 3 }), fc.boolean(), ([a, b], maxRetries, held) => {
        const ctl = { held, cancelled: false }
        assert.deepEqual(reduceTask(0, b, maxRetries, ctl), reduceTask(0, a, maxRetries, ctl))
      }),
      { numRuns: 2000 },
    )
  })

  it('only moves forward within an attempt; a later attempt or DONE only when events say so', () => {
    fc.assert(
      fc.property(
        fc.array(taskEvent, { maxLength: 30 }),
        fc.integer({ min: 1, max: 3 }),
        (evs, maxRetries) => {
          let prev = reduceAttempts([], maxRetries)
          for (let i = 1; i <= evs.length; i++) {
            const added = evs[i - 1]!
            const next = reduceAttempts(evs.slice(0, i), maxRetries)
            const isRetry = added.kind === 'requeue' && added.reason === 'retry'
            if (!isRetry) {
              if (prev.state === 'DONE') assert.equal(next.state, 'DONE', 'DONE is lost only through a retry')
              if (next.state !== 'DONE') {
                assert.ok(next.attempt >= prev.attempt, 'attempt went back')
                if (next.attempt === prev.attempt)
                  assert.ok(RANK[next.state] >= RANK[prev.state], 'state went back')
              }
            }
            prev = next
          }
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('DONE and RUN name a peer that claimed that attempt', () => {
    fc.assert(
      fc.property(fc.array(taskEvent, { maxLength: 30 }), (evs) => {
        const v = reduceAttempts(evs, 3)
        if (v.state === 'DONE' || v.state === 'RUN' || v.state === 'CLAIM') {
          assert.ok(evs.some((e) => e.kind === 'claim' && e.attempt === v.attempt && e.peer === v.owner))
        }
      }),
      { numRuns: 1000 },
    )
  })
})

describe('task reducer, worked examples', () => {
  const ev = (kind: TaskEvent['kind'], attempt: number, peer: string, lc: number, extra = {}): TaskEvent => ({
    kind,
    task: 0,
    attempt,
    peer,
    lc,
    ...extra,
  })

  it('the best bid wins the claim, ties go to the lower peer id', () => {
    const v = reduceTask(0, [ev('claim', 0, 'pB', 1, { bid: 2 }), ev('claim', 0, 'pA', 1, { bid: 3 })], 3)
    assert.equal(v.state, 'CLAIM')
    assert.equal(v.owner, 'pB')
    const tie = reduceTask(0, [ev('claim', 0, 'pB', 1, { bid: 2 }), ev('claim', 0, 'pA', 1, { bid: 2 })], 3)
    assert.equal(tie.owner, 'pA')
  })

  it('a requeue of a dead holder fences its late failure and starts a new attempt', () => {
    const events = [
      ev('claim', 0, 'pA', 1, { bid: 1 }),
      ev('start', 0, 'pA', 2),
      ev('requeue', 0, 'pB', 3, { reason: 'dead' }),
    ]
    const v = reduceTask(0, events, 3)
    assert.equal(v.state, 'QUEUE')
    assert.equal(v.attempt, 1)
    const late = reduceTask(0, [...events, ev('fail', 0, 'pA', 4, { reason: 'x' })], 3)
    assert.equal(late.attempt, 1)
    assert.equal(late.state, 'QUEUE')
  })

  it('a task fails for good after maxRetries failed attempts; a user retry starts over', () => {
    const events: TaskEvent[] = []
    for (let a = 0; a < 2; a++)
      events.push(ev('claim', a, 'pA', 1, { bid: 1 }), ev('fail', a, 'pA', 2, { reason: 'exit 1' }))
    const v = reduceTask(0, events, 2)
    assert.equal(v.state, 'FAIL')
    assert.equal(v.failures, 2)
    assert.equal(v.lastError, 'exit 1')
    const retried = reduceTask(0, [...events, ev('requeue', 2, 'pC', 5, { reason: 'retry' })], 2)
    assert.equal(retried.state, 'QUEUE')
    assert.equal(retried.failures, 0)
  })

  it('cancel does not undo DONE; hold shows HOLD until released', () => {
    const done = [ev('claim', 0, 'pA', 1, { bid: 1 }), ev('done', 0, 'pA', 2)]
    assert.equal(reduceTask(0, [...done, ev('cancel', 0, 'pB', 3)], 3).state, 'DONE')
    const held = [ev('hold', 0, 'pB', 1)]
    assert.equal(reduceTask(0, held, 3).state, 'HOLD')
    assert.equal(reduceTask(0, [...held, ev('release', 0, 'pC', 2)], 3).state, 'QUEUE')
    assert.equal(reduceTask(0, [], 3, { held: true, cancelled: false }).state, 'HOLD')
    assert.equal(reduceTask(0, [], 3, { held: false, cancelled: true }).state, 'CANCEL')
  })
})

describe('job control', () => {
  const jobEvent: fc.Arbitrary<JobEvent> = fc
    .record({
      kind: fc.constantFrom<JobEvent['kind']>('hold', 'resume', 'cancel', 'retry', 'priority', 'release'),
      peer: fc.constantFrom(...peers),
      lc: fc.integer({ min: 1, max: 6 }),
      value: fc.integer({ min: -5, max: 5 }),
    })
    .map(({ kind, peer, lc, value }) =>
      kind === 'priority' ? { kind, peer, lc, value } : { kind, peer, lc },
    )

  it('is the same for every order of the same events', () => {
    fc.assert(
      fc.property(
        fc
          .array(jobEvent, { maxLength: 20 })
          .chain((evs) => fc.tuple(fc.constant(evs), fc.shuffledSubarray(evs, { minLength: evs.length }))),
        ([a, b]) => {
          assert.deepEqual(reduceJobControl({ priority: 0 }, b), reduceJobControl({ priority: 0 }, a))
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('the later clock wins: hold then resume is not held; cancel then retry is live again', () => {
    const c = reduceJobControl({ priority: 0 }, [
      { kind: 'hold', peer: 'pB', lc: 1 },
      { kind: 'resume', peer: 'pA', lc: 2 },
      { kind: 'cancel', peer: 'pA', lc: 3 },
      { kind: 'retry', peer: 'pA', lc: 4 },
      { kind: 'priority', peer: 'pC', lc: 5, value: 7 },
    ])
    assert.deepEqual(c, { held: false, cancelled: false, priority: 7, released: false, removed: false })
  })

  it('a remove holds whatever is said before or after it, and whatever a hostile value says', () => {
    const events = [
      { kind: 'remove' as const, peer: 'pA', lc: 2, value: 9 },
      { kind: 'retry' as const, peer: 'pB', lc: 3 },
      { kind: 'resume' as const, peer: 'pB', lc: 1 },
    ]
    const c = reduceJobControl({ priority: 0 }, events)
    assert.equal(c.removed, true)
    assert.equal(c.priority, 0, 'a remove sets no priority')
    assert.deepEqual(reduceJobControl({ priority: 0 }, [...events].reverse()), c)
  })
})
