import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { updateGuard } from '../../src/crdt/guard.ts'
import { spec } from './fixtures.ts'

const H = 'a'.repeat(64)
const out = (path: string, task = 0, attempt = 0) => ({ path, hash: H, size: 10, frame: 1, task, attempt })

/** The updates `doc` emits while `f` runs (one per transaction). */
function capture(doc: Y.Doc, f: () => void): Uint8Array[] {
  const updates: Uint8Array[] = []
  const on = (u: Uint8Array) => updates.push(u)
  doc.on('update', on)
  try {
    f()
  } finally {
    doc.off('update', on)
  }
  return updates
}

/** A copy of `doc` (everything it has, under a new client id). */
function clone(doc: Y.Doc): Y.Doc {
  const copy = new Y.Doc()
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc))
  return copy
}

/**
 * A farm's document as an honest peer holds it: two jobs with events and outputs, an output record
 * and a license overwritten, both normal.
 */
function honestFarm(): { doc: Y.Doc; farm: FarmDoc } {
  const doc = new Y.Doc()
  const farm = new FarmDoc(doc, { peer: 'pA' })
  farm.addJob(spec('j1'))
  farm.addJob(spec('j2'))
  farm.appendTaskEvents('j1', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
  farm.appendTaskEvents('j1', [{ kind: 'start', task: 0, attempt: 0 }])
  farm.appendJobEvent('j2', 'hold')
  farm.recordOutput('j1', out('frame_0001.png'))
  farm.recordOutput('j1', out('frame_0002.png'))
  farm.recordOutput('j1', out('frame_0001.png', 0, 1)) // an output recorded again: overwritten
  farm.setLicense('redshift', 2)
  farm.setLicense('redshift', 3)
  return { doc, farm }
}

const jobsOf = (doc: Y.Doc) => doc.getMap('jobs') as Y.Map<Y.Map<unknown>>
const jobOf = (doc: Y.Doc, id: string) => jobsOf(doc).get(id)!
const eventsOf = (doc: Y.Doc, id: string) => jobOf(doc, id).get('events') as Y.Array<unknown>

const refused = (err: unknown, re: RegExp) => {
  assert.equal((err as Error).name, 'ForbiddenUpdateError')
  assert.match((err as Error).message, re)
  return true
}

describe('update guard', () => {
  const hostileActs: {
    what: string
    act: (doc: Y.Doc) => void
    message: RegExp
    /** What the update does to an unguarded replica: the damage the guard keeps out. */
    damage: (doc: Y.Doc) => boolean
  }[] = [
    {
      what: 'deletes a job entry',
      act: (d) => jobsOf(d).delete('j1'),
      message: /delete job j1\b/,
      damage: (d) => !jobsOf(d).has('j1'),
    },
    {
      what: "sets a job's spec again",
      act: (d) => jobOf(d, 'j1').set('spec', { ...spec('j1'), name: 'pwned' }),
      message: /replace the spec of job j1\b/,
      damage: (d) => (jobOf(d, 'j1').get('spec') as { name: string }).name === 'pwned',
    },
    {
      what: "sets a job's events again",
      act: (d) => jobOf(d, 'j1').set('events', new Y.Array()),
      message: /replace the events of job j1\b/,
      damage: (d) => eventsOf(d, 'j1').length === 0,
    },
    {
      what: "sets a job's outputs again",
      act: (d) => jobOf(d, 'j1').set('outputs', new Y.Map()),
      message: /replace the outputs of job j1\b/,
      damage: (d) => (jobOf(d, 'j1').get('outputs') as Y.Map<unknown>).size === 0,
    },
    {
      what: "deletes a job's outputs map",
      act: (d) => jobOf(d, 'j1').delete('outputs'),
      message: /delete the outputs of job j1\b/,
      damage: (d) => !jobOf(d, 'j1').has('outputs'),
    },
    {
      what: 'deletes an event',
      act: (d) => eventsOf(d, 'j1').delete(0, 1),
      message: /delete events of job j1\b/,
      damage: (d) => eventsOf(d, 'j1').length === 1,
    },
    {
      what: 'deletes the last event of a job (in the middle of a merged run)',
      act: (d) => eventsOf(d, 'j1').delete(1, 1),
      message: /delete events of job j1\b/,
      damage: (d) => eventsOf(d, 'j1').length === 1,
    },
    {
      what: 'sets an existing job id to a new map',
      act: (d) => jobsOf(d).set('j2', new Y.Map()),
      message: /replace job j2\b/,
      damage: (d) => !jobOf(d, 'j2').has('spec'),
    },
  ]

  for (const h of hostileActs) {
    it(`refuses an update that ${h.what}, as gossip and as a sync diff, naming the job`, () => {
      const { doc: honest } = honestFarm()
      const guard = updateGuard(honest)
      const hostile = clone(honest)
      const before = Y.encodeStateAsUpdate(honest)
      const [update, ...more] = capture(hostile, () => h.act(hostile))
      assert.ok(update !== undefined && more.length === 0, 'one transaction, one update')
      const diff = Y.encodeStateAsUpdate(hostile, Y.encodeStateVector(honest))
      // the update is real: an unguarded replica takes the damage
      const victim = clone(honest)
      Y.applyUpdate(victim, update)
      assert.ok(h.damage(victim), 'the hostile update does what the test says')
      assert.throws(
        () => guard(update),
        (e) => refused(e, h.message),
      )
      assert.throws(
        () => guard(diff),
        (e) => refused(e, h.message),
      )
      // as doc-sync calls it, with the update it decoded already
      assert.throws(
        () => guard(update, Y.decodeUpdate(update)),
        (e) => refused(e, h.message),
      )
      assert.deepEqual(Y.encodeStateAsUpdate(honest), before, 'validating changes nothing')
    })
  }

  it('refuses a job id set by a peer that never saw the job (no origin: a concurrent set)', () => {
    const { doc: honest } = honestFarm()
    const stranger = new Y.Doc()
    const [update] = capture(stranger, () => {
      const m = new Y.Map()
      m.set('spec', { ...spec('j1'), name: 'mine now' })
      jobsOf(stranger).set('j1', m)
    })
    // whether such a set wins depends on client ids; the guard refuses it either way
    assert.throws(
      () => updateGuard(honest)(update!),
      (e) => refused(e, /replace job j1\b/),
    )
  })

  it('refuses a replacement whose origin is an item of the same update', () => {
    const { doc: honest } = honestFarm()
    const hostile = clone(honest)
    // three sets of one key: the later items take their place from the earlier ones in the update
    hostile.transact(() => jobOf(hostile, 'j2').set('spec', { x: 1 }))
    hostile.transact(() => jobOf(hostile, 'j2').set('spec', { x: 2 }))
    hostile.transact(() => jobOf(hostile, 'j2').set('spec', { x: 3 }))
    const diff = Y.encodeStateAsUpdate(hostile, Y.encodeStateVector(honest))
    assert.throws(
      () => updateGuard(honest)(diff),
      (e) => refused(e, /replace the spec of job j2\b/),
    )
  })

  it('lets legitimate updates through: new jobs, events, output and license overwrites, full syncs', () => {
    const { doc: a, farm: fa } = honestFarm()
    const b = new Y.Doc()
    const fb = new FarmDoc(b, { peer: 'pB' })
    const guardA = updateGuard(a)
    const guardB = updateGuard(b)
    // a full-state diff to an empty replica carries every overwrite of the farm's life in its delete set
    const full = Y.encodeStateAsUpdate(a, Y.encodeStateVector(b))
    assert.ok(Y.decodeUpdate(full).ds.clients.size > 0, 'the diff carries deletes')
    guardB(full)
    Y.applyUpdate(b, full)
    assert.deepEqual(fb.jobIds(), ['j1', 'j2'])
    // b works on the farm: each of its updates passes a's guard, and a's pass b's
    const fromB = capture(b, () => {
      fb.addJob(spec('j3'))
      fb.appendTaskEvents('j1', [{ kind: 'done', task: 0, attempt: 0 }])
      fb.recordOutput('j1', out('frame_0001.png', 0, 2)) // overwrites a's record
      fb.recordOutput('j3', out('x.png'))
      fb.setLicense('redshift', 5) // overwrites a's setting
      fb.setLicense('arnold', 1)
      fb.appendJobEvent('j2', 'remove') // removal is an event
    })
    assert.equal(fromB.length, 7)
    const fromA = capture(a, () => {
      fa.recordOutput('j1', out('frame_0002.png', 0, 3))
      fa.setLicense('redshift', 4)
    })
    for (const u of fromB) guardA(u, Y.decodeUpdate(u))
    for (const u of fromA) guardB(u)
    for (const u of fromB) Y.applyUpdate(a, u)
    for (const u of fromA) Y.applyUpdate(b, u)
    // delivered twice (gossip after a sync): what a replica has already is not a replacement
    for (const u of fromB) guardA(u)
    // sync diffs both ways after all that, and the full state to a third, empty replica
    guardA(Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
    guardB(Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
    guardA(Y.encodeStateAsUpdate(b))
    updateGuard(new Y.Doc())(Y.encodeStateAsUpdate(b))
    assert.deepEqual(Y.encodeStateVector(a), Y.encodeStateVector(b))
    assert.equal(fa.outputs('j1').find((o) => o.path === 'frame_0001.png')?.attempt, 2)
  })

  it('lets through deletes in outputs and licenses, and of items made in the same update', () => {
    const { doc: honest } = honestFarm()
    const guard = updateGuard(honest)
    const peer = clone(honest)
    const updates = capture(peer, () => {
      ;(jobOf(peer, 'j1').get('outputs') as Y.Map<unknown>).delete('frame_0002.png')
      peer.getMap('licenses').delete('redshift')
      peer.transact(() => {
        const m = new Y.Map()
        jobsOf(peer).set('brief', m)
        m.set('spec', spec('brief'))
        jobsOf(peer).delete('brief')
      })
    })
    assert.equal(updates.length, 3)
    for (const u of updates) guard(u)
    guard(Y.encodeStateAsUpdate(peer, Y.encodeStateVector(honest)))
    // once applied, the same deletes come again with every full sync: gone here already, so fine
    for (const u of updates) Y.applyUpdate(honest, u)
    assert.equal(jobsOf(honest).has('brief'), false)
    guard(Y.encodeStateAsUpdate(peer))
  })

  it('lets a job id whose entry is already gone here be set again', () => {
    // a replica that took a job's deletion before it had the guard: nothing is left to replace
    const { doc: honest } = honestFarm()
    const peer = clone(honest)
    const [deletion] = capture(peer, () => jobsOf(peer).delete('j1'))
    Y.applyUpdate(honest, deletion!)
    const [readd] = capture(peer, () => new FarmDoc(peer, { peer: 'pB' }).addJob(spec('j1')))
    updateGuard(honest)(readd!)
  })

  it('lets through a delete of items this replica has not seen yet (Yjs keeps it pending)', () => {
    const { doc: a, farm: fa } = honestFarm()
    const b = clone(a)
    const fb = new FarmDoc(b, { peer: 'pB' })
    // a records an output; b, ahead of c, overwrites it: c gets b's gossip before a's
    const c = clone(a)
    const [first] = capture(a, () => fa.recordOutput('j1', out('late.png')))
    Y.applyUpdate(b, first!)
    const [second] = capture(b, () => fb.recordOutput('j1', out('late.png', 0, 1)))
    updateGuard(c)(second!)
    Y.applyUpdate(c, second!)
    updateGuard(c)(first!)
    Y.applyUpdate(c, first!)
    assert.equal(new FarmDoc(c, { peer: 'pC' }).outputs('j1').find((o) => o.path === 'late.png')?.attempt, 1)
  })

  it('never refuses what well-behaved peers write, in any order of delivery (property)', () => {
    type Op =
      | { kind: 'add'; peer: number }
      | { kind: 'event'; peer: number; job: number }
      | { kind: 'output'; peer: number; job: number; path: number }
      | { kind: 'license'; peer: number; name: number; seats: number }
      | { kind: 'deliver'; from: number; to: number; pick: number }
      | { kind: 'sync'; from: number; to: number }
    const peer = fc.integer({ min: 0, max: 2 })
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), peer }),
      fc.record({ kind: fc.constant('event' as const), peer, job: fc.nat(9) }),
      fc.record({ kind: fc.constant('output' as const), peer, job: fc.nat(9), path: fc.nat(3) }),
      fc.record({ kind: fc.constant('license' as const), peer, name: fc.nat(2), seats: fc.nat(9) }),
      fc.record({ kind: fc.constant('deliver' as const), from: peer, to: peer, pick: fc.nat(50) }),
      fc.record({ kind: fc.constant('sync' as const), from: peer, to: peer }),
    )
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const docs = [0, 1, 2].map(() => new Y.Doc())
        const farms = docs.map((d, i) => new FarmDoc(d, { peer: `p${i}` }))
        const guards = docs.map((d) => updateGuard(d))
        // each peer's own updates, delivered to the others in any order (gossip), some never (syncs)
        const sent = docs.map((d) => {
          const list: Uint8Array[] = []
          d.on('update', (u: Uint8Array, origin: unknown) => {
            if (origin !== 'remote') list.push(u)
          })
          return list
        })
        const take = (to: number, update: Uint8Array) => {
          guards[to]!(update)
          Y.applyUpdate(docs[to]!, update, 'remote')
        }
        let jobs = 0
        const known = (p: number, j: number) => {
          const ids = farms[p]!.jobIds()
          return ids.length === 0 ? undefined : ids[j % ids.length]
        }
        for (const o of ops) {
          if (o.kind === 'add') {
            farms[o.peer]!.addJob(spec(`j${jobs++}`))
          } else if (o.kind === 'event') {
            const id = known(o.peer, o.job)
            if (id !== undefined) farms[o.peer]!.appendJobEvent(id, 'priority', o.job)
          } else if (o.kind === 'output') {
            const id = known(o.peer, o.job)
            if (id !== undefined) farms[o.peer]!.recordOutput(id, out(`f${o.path}.png`, 0, o.job))
          } else if (o.kind === 'license') {
            farms[o.peer]!.setLicense(`lic${o.name}`, o.seats)
          } else if (o.kind === 'deliver') {
            const list = sent[o.from]!
            if (o.from !== o.to && list.length > 0) take(o.to, list[o.pick % list.length]!)
          } else if (o.from !== o.to) {
            take(o.to, Y.encodeStateAsUpdate(docs[o.from]!, Y.encodeStateVector(docs[o.to]!)))
          }
        }
        // and in the end everyone syncs with everyone, still through the guard
        for (let round = 0; round < 2; round++)
          for (let f = 0; f < 3; f++)
            for (let t = 0; t < 3; t++)
              if (f !== t) take(t, Y.encodeStateAsUpdate(docs[f]!, Y.encodeStateVector(docs[t]!)))
        const jobIds = farms[0]!.jobIds()
        assert.equal(jobIds.length, jobs)
        for (const f of farms) assert.deepEqual(f.jobIds(), jobIds)
      }),
      { numRuns: 150, seed: 0x5eed },
    )
  })
})
