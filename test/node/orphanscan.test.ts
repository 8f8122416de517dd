// orphanRequeues: what a pass hands back or requeues, read from the views alone.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as Y from 'yjs'
import { FarmDoc, type NewTaskEvent } from '../../src/crdt/farmdoc.ts'
import { type OrphanScan, orphanRequeues } from '../../src/node/orphanscan.ts'
import { spec } from '../crdt/fixtures.ts'

/** A 3-task job: task 0 claimed by `me`, task 1 by `other`, task 2 queued. */
function farm(): FarmDoc {
  const doc = new Y.Doc()
  const mine = new FarmDoc(doc, { peer: 'me' })
  mine.addJob(spec('j', 3))
  mine.appendTaskEvents('j', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
  new FarmDoc(doc, { peer: 'other' }).appendTaskEvents('j', [{ kind: 'claim', task: 1, attempt: 0, bid: 1 }])
  return mine
}

function scan(f: FarmDoc, over: Partial<OrphanScan>): Array<[string, NewTaskEvent]> {
  const got: Array<[string, NewTaskEvent]> = []
  const base: OrphanScan = {
    me: 'me',
    here: () => true,
    liveness: () => 'alive',
    up: 0,
    deadAfterMs: 30_000,
    hearsOthers: true,
    log: () => undefined,
  }
  orphanRequeues(f.views(), { ...base, ...over }, (job, e) => got.push([job, e]))
  return got
}

describe('orphanRequeues', () => {
  it('hands back an attempt of ours that nothing here runs, and requeues one a dead peer holds', () => {
    const f = farm()
    assert.deepEqual(scan(f, {}), [], 'ours runs here, the other holder is alive')
    assert.deepEqual(scan(f, { here: (key) => key !== 'j/0' }), [
      ['j', { kind: 'requeue', task: 0, attempt: 0, reason: 'lost' }],
    ])
    assert.deepEqual(scan(f, { liveness: (p) => (p === 'other' ? 'dead' : 'alive') }), [
      ['j', { kind: 'requeue', task: 1, attempt: 0, reason: 'dead' }],
    ])
  })

  it('counts a holder never heard from as dead only after deadAfterMs, and only while it hears others', () => {
    const f = farm()
    const unknown = { liveness: () => 'unknown' as const }
    assert.deepEqual(scan(f, { ...unknown, up: 29_999 }), [])
    assert.deepEqual(scan(f, { ...unknown, up: 30_000, hearsOthers: false }), [])
    assert.deepEqual(scan(f, { ...unknown, up: 30_000 }), [
      ['j', { kind: 'requeue', task: 1, attempt: 0, reason: 'dead' }],
    ])
  })
})
