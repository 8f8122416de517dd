import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import * as Y from 'yjs'
import { applyJobAction } from '../../src/crdt/control.ts'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { atTime, viewJob } from '../../src/crdt/jobview.ts'
import { DEFAULT_SCHED } from '../../src/crdt/schedspec.ts'
import { LIMITS, MAX_CLOCK } from '../../src/crdt/schema.ts'
import { DocStore } from '../../src/crdt/store.ts'
import { liveBlobJobs } from '../../src/node/taskfiles.ts'
import { readyQueue } from '../../src/sched/ready.ts'
import { spec } from './fixtures.ts'

function sync(a: Y.Doc, b: Y.Doc): void {
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
}

describe('farm document', () => {
  it('adds a job with its tasks in one update and derives task and job views', () => {
    const doc = new Y.Doc()
    let updates = 0
    doc.on('update', () => updates++)
    const fd = new FarmDoc(doc, { peer: 'pA' })
    fd.addJob(spec('j1', 1000))
    assert.equal(updates, 1)
    const v = fd.view('j1')!
    assert.equal(v.tasks.length, 1000)
    assert.equal(v.state, 'QUEUE')
    assert.equal(v.counts.QUEUE, 1000)
  })

  it('rejects a malformed spec with a clear error and keeps what it has', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('j1'))
    assert.throws(() => fd.addJob(spec('j2', 4, { chunk: 0 })), { name: 'InvalidJobError', message: /chunk/ })
    assert.throws(() => fd.addJob(spec('j1')), { name: 'InvalidJobError', message: /already exists/ })
    assert.throws(() => fd.addJob({ id: '../etc' }), { name: 'InvalidJobError' })
    assert.deepEqual(fd.jobIds(), ['j1'])
  })

  it('ignores and reports hostile entries without losing valid ones', () => {
    const doc = new Y.Doc()
    const reported: string[] = []
    const fd = new FarmDoc(doc, { peer: 'pA', onInvalid: (id, e) => reported.push(`${id}: ${e}`) })
    fd.addJob(spec('good'))
    fd.appendTaskEvents('good', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    const jobs = doc.getMap('jobs')
    jobs.set('junk', 'not a map')
    const bad = new Y.Map()
    bad.set('spec', { id: 'bad', name: 7 })
    bad.set('events', new Y.Array())
    jobs.set('bad', bad)
    const events = (jobs.get('good') as Y.Map<unknown>).get('events') as Y.Array<unknown>
    events.push([
      { k: 'claim', t: 99, a: 0, p: 'pX', c: 1, b: 0 },
      { k: 'nuke' },
      null,
      { k: 'done', t: 0, a: 0, p: 'x'.repeat(500), c: 2 },
    ])
    const views = fd.views()
    assert.deepEqual(
      views.map((v) => v.id),
      ['good'],
    )
    assert.equal(views[0]!.invalid, 4)
    assert.equal(views[0]!.tasks[0]!.state, 'CLAIM')
    assert.ok(reported.some((r) => r.startsWith('junk')))
    assert.ok(reported.some((r) => r.startsWith('bad')))
  })

  it('a hostile entry that sets a job clock to the limit freezes that job, loudly, and no other', () => {
    const doc = new Y.Doc()
    const fd = new FarmDoc(doc, { peer: 'pA' })
    fd.addJob(spec('victim'))
    fd.addJob(spec('other'))
    const events = (doc.getMap('jobs').get('victim') as Y.Map<unknown>).get('events') as Y.Array<unknown>
    events.push([
      { k: 'hold', p: 'evil', c: MAX_CLOCK },
      { k: 'resume', p: 'evil', c: MAX_CLOCK },
    ])
    const victim = fd.view('victim')!
    assert.equal(victim.frozen, true)
    // its claims and a user's actions are refused with a reason, not written to be dropped
    assert.throws(() => fd.appendTaskEvents('victim', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }]), {
      name: 'FrozenJobError',
      message: /can take no more events/,
    })
    assert.throws(() => applyJobAction(fd, 'victim', 'cancel'), { name: 'FrozenJobError' })
    // no peer is offered its tasks; the other job runs as before
    assert.deepEqual(
      readyQueue(fd.views(), Date.now(), 100).tasks.map((t) => t.job),
      ['other', 'other', 'other', 'other'],
    )
    fd.appendTaskEvents('other', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    assert.equal(fd.view('other')!.tasks[0]!.state, 'CLAIM')
    assert.equal(fd.view('other')!.frozen, false)
  })

  it('a malformed license entry is ignored and reported once, not on every read', () => {
    const said: string[] = []
    const doc = new Y.Doc()
    const fd = new FarmDoc(doc, { peer: 'pA', onInvalid: (what, error) => said.push(`${what}: ${error}`) })
    fd.setLicense('redshift', 2)
    doc.getMap('licenses').set('junk', 'lots')
    for (let i = 0; i < 3; i++) assert.deepEqual([...fd.licenses()], [['redshift', 2]])
    assert.deepEqual(said, ['license junk: seats must be a whole number'])
  })

  it('retry of a cancelled job runs again what did not finish, failed tasks too, and counts them', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('jc', 4, { maxRetries: 1 }))
    fd.appendTaskEvents('jc', [
      { kind: 'claim', task: 0, attempt: 0, bid: 1 },
      { kind: 'start', task: 0, attempt: 0 },
      { kind: 'done', task: 0, attempt: 0 },
      { kind: 'claim', task: 1, attempt: 0, bid: 1 },
      { kind: 'start', task: 1, attempt: 0 },
      { kind: 'fail', task: 1, attempt: 0, reason: 'exit code 1' },
    ])
    applyJobAction(fd, 'jc', 'cancel')
    assert.deepEqual(
      fd.view('jc')!.tasks.map((t) => t.state),
      ['DONE', 'CANCEL', 'CANCEL', 'CANCEL'],
    )
    assert.equal(applyJobAction(fd, 'jc', 'retry'), 'jc: 3 task(s) requeued, job no longer cancelled')
    assert.deepEqual(
      fd.view('jc')!.tasks.map((t) => t.state),
      ['DONE', 'QUEUE', 'QUEUE', 'QUEUE'],
    )
  })

  it('a task requeued past the attempt limit by hostile entries has failed for good', () => {
    const doc = new Y.Doc()
    const fd = new FarmDoc(doc, { peer: 'pA' })
    fd.addJob(spec('spam'))
    const events = (doc.getMap('jobs').get('spam') as Y.Map<unknown>).get('events') as Y.Array<unknown>
    events.push(
      Array.from({ length: LIMITS.attempt + 1 }, (_, a) => ({ k: 'requeue', t: 0, a, p: 'evil', c: 1 })),
    )
    const t = fd.view('spam')!.tasks[0]!
    assert.equal(t.state, 'FAIL')
    assert.match(t.lastError ?? '', /no attempts left/)
    assert.ok(!readyQueue(fd.views(), Date.now(), 100).tasks.some((q) => q.key === 'spam/0'))
    // what this peer would write for it is refused here, not dropped by every reader
    assert.throws(
      () => fd.appendTaskEvents('spam', [{ kind: 'claim', task: 0, attempt: LIMITS.attempt + 1, bid: 1 }]),
      { name: 'InvalidJobError', message: /malformed event/ },
    )
  })

  it('views a job once per view even when many paths of dependencies lead to it', () => {
    // a ladder: two jobs per layer, each waiting for both jobs of the layer below (2^20 paths)
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    const layers = 20
    for (let l = 0; l < layers; l++) {
      const below = l === 0 ? [] : [`l${l - 1}a`, `l${l - 1}b`]
      for (const side of ['a', 'b']) fd.addJob(spec(`l${l}${side}`, 1, { dependsOn: below }))
    }
    let reads = 0
    const top = viewJob(`l${layers - 1}a`, (id) => {
      reads++
      return fd.read(id)
    })
    assert.deepEqual(top?.waitingOn, [`l${layers - 2}a`, `l${layers - 2}b`])
    assert.ok(reads <= 2 * layers, `${reads} reads for ${2 * layers} jobs`)
  })

  it('views a chain of jobs, each waiting for the one before, in time linear in its length', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    const n = 2000
    const id = (i: number) => `c${String(i).padStart(5, '0')}`
    for (let i = 0; i < n; i++) fd.addJob(spec(id(i), 1, { dependsOn: i === 0 ? [] : [id(i - 1)] }))
    let reads = 0
    const read = fd.read.bind(fd)
    fd.read = (jid: string) => {
      reads++
      return read(jid)
    }
    // the last job first: the whole chain below it is viewed once, and every other view reuses it
    assert.deepEqual(fd.view(id(n - 1))?.waitingOn, [id(n - 2)])
    assert.equal(fd.views().length, n)
    assert.ok(reads <= 2 * n, `${reads} reads for ${n} jobs`)
  })

  it('views are the same whatever order they are asked in, even where hostile dependencies make cycles', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f']
    fc.assert(
      fc.property(
        // each job's dependencies (self and cycles allowed: a hostile peer writes specs as it likes),
        // which jobs' one task is DONE, and the order views are asked for
        fc.array(fc.subarray(ids), { minLength: ids.length, maxLength: ids.length }),
        fc.subarray(ids),
        fc.shuffledSubarray(ids, { minLength: ids.length }),
        (deps, done, order) => {
          const doc = new Y.Doc()
          const fd = new FarmDoc(doc, { peer: 'pA' })
          ids.forEach((id, i) => {
            fd.addJob(spec(id, 1))
            // the dependencies go straight into the stored spec: submit would refuse most of them
            const job = doc.getMap('jobs').get(id) as Y.Map<unknown>
            job.set('spec', { ...(job.get('spec') as object), dependsOn: deps[i]! })
          })
          for (const id of done) {
            fd.appendTaskEvents(id, [
              { kind: 'claim', task: 0, attempt: 0, bid: 1 },
              { kind: 'done', task: 0, attempt: 0 },
            ])
          }
          // each job viewed alone (no view reused from another call), then in `order` on a replica
          const alone = new Map(ids.map((id) => [id, viewJob(id, (j) => fd.read(j))]))
          const other = new FarmDoc(new Y.Doc(), { peer: 'pB' })
          Y.applyUpdate(other.doc, Y.encodeStateAsUpdate(doc))
          for (const id of order) assert.deepEqual(other.view(id), alone.get(id), id)
          assert.deepEqual(
            fd.views(),
            ids.map((id) => alone.get(id)),
          )
        },
      ),
      { numRuns: 300 },
    )
  })

  it('two replicas that append concurrently converge to the same views', () => {
    const a = new Y.Doc()
    const b = new Y.Doc()
    const fa = new FarmDoc(a, { peer: 'pA' })
    const fb = new FarmDoc(b, { peer: 'pB' })
    fa.addJob(spec('j1'))
    sync(a, b)
    fa.appendTaskEvents('j1', [{ kind: 'claim', task: 0, attempt: 0, bid: 5 }])
    fb.appendTaskEvents('j1', [{ kind: 'claim', task: 0, attempt: 0, bid: 2 }])
    fb.appendJobEvent('j1', 'priority', 9)
    fa.appendJobEvent('j1', 'hold')
    sync(a, b)
    assert.deepEqual(fa.view('j1'), fb.view('j1'))
    assert.equal(fa.view('j1')!.tasks[0]!.owner, 'pB')
    assert.equal(fa.view('j1')!.priority, 9)
    assert.equal(fa.view('j1')!.state, 'HOLD')
  })

  it('tasks of a job that depends on an unfinished job WAIT', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('render', 1))
    fd.addJob(spec('encode', 1, { dependsOn: ['render'] }))
    assert.equal(fd.view('encode')!.state, 'WAIT')
    assert.deepEqual(fd.view('encode')!.waitingOn, ['render'])
    fd.appendTaskEvents('render', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    fd.appendTaskEvents('render', [{ kind: 'done', task: 0, attempt: 0 }])
    assert.equal(fd.view('render')!.state, 'DONE')
    assert.equal(fd.view('encode')!.state, 'QUEUE')
  })

  it('incremental parsing always agrees with a fresh parse (concurrent appends, deletions, holds)', () => {
    const step = fc.record({
      who: fc.integer({ min: 0, max: 2 }),
      op: fc.constantFrom('claim', 'start', 'done', 'fail', 'hold', 'resume', 'sync', 'delete', 'read'),
      task: fc.integer({ min: 0, max: 3 }),
    })
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const docs = [new Y.Doc(), new Y.Doc(), new Y.Doc()]
        const fds = docs.map((d, i) => new FarmDoc(d, { peer: `p${i}` }))
        fds[0]!.addJob(spec('j1', 4))
        for (const d of docs.slice(1)) sync(docs[0]!, d)
        for (const { who, op, task } of steps) {
          const fd = fds[who]!
          const attempt = fd.view('j1')!.tasks[task]!.attempt
          if (op === 'sync') sync(docs[who]!, docs[(who + 1) % 3]!)
          else if (op === 'read') fd.views()
          else if (op === 'hold' || op === 'resume') fd.appendJobEvent('j1', op)
          else if (op === 'delete') {
            const events = (docs[who]!.getMap('jobs').get('j1') as Y.Map<unknown>).get(
              'events',
            ) as Y.Array<unknown>
            if (events.length > 0) docs[who]!.transact(() => events.delete(0, 1), { kind: 'local' })
          } else
            fd.appendTaskEvents('j1', [{ kind: op, task, attempt, ...(op === 'claim' ? { bid: who } : {}) }])
        }
        for (const [i, d] of docs.entries()) {
          const fresh = new Y.Doc()
          Y.applyUpdate(fresh, Y.encodeStateAsUpdate(d))
          assert.deepEqual(fds[i]!.view('j1'), new FarmDoc(fresh, { peer: 'x' }).view('j1'))
        }
      }),
      { numRuns: 300 },
    )
  })

  it('frame by frame: task i of the encode waits for the render tasks of its frames', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    // render: frames 1-8 in chunks of 2 (4 tasks); encode: frames 1-8 in chunks of 4 (2 tasks)
    fd.addJob(spec('render', 4))
    fd.addJob(
      spec('encode', 2, {
        chunk: 4,
        frames: { start: 1, end: 8, step: 1 },
        sched: { ...DEFAULT_SCHED, taskDeps: ['render'] },
      }),
    )
    const states = () => fd.view('encode')!.tasks.map((t) => t.state)
    assert.deepEqual(states(), ['WAIT', 'WAIT'])
    for (const i of [0, 1]) {
      fd.appendTaskEvents('render', [{ kind: 'claim', task: i, attempt: 0, bid: 1 }])
      fd.appendTaskEvents('render', [{ kind: 'done', task: i, attempt: 0 }])
    }
    assert.deepEqual(states(), ['QUEUE', 'WAIT'])
    assert.equal(fd.view('encode')!.state, 'QUEUE')
  })

  it('a manual job waits for its release; a time condition holds it until then', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('m', 2, { sched: { ...DEFAULT_SCHED, manual: true, notBefore: 2_000 } }))
    assert.equal(fd.view('m')!.state, 'WAIT')
    assert.deepEqual(fd.view('m')!.waitingOn, ['manual release'])
    fd.appendJobEvent('m', 'release')
    assert.equal(fd.view('m')!.state, 'QUEUE')
    assert.equal(atTime(fd.view('m')!, 1_000).state, 'WAIT')
    assert.equal(atTime(fd.view('m')!, 2_000).state, 'QUEUE')
  })

  it('a host that failed 3 tasks of a job is blocklisted for it; the job fails at 10% failed tasks', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('j', 20, { maxRetries: 1 }))
    const failOn = (task: number, peer: string) => {
      const other = new FarmDoc(fd.doc, { peer })
      other.appendTaskEvents('j', [{ kind: 'claim', task, attempt: 0, bid: 1 }])
      other.appendTaskEvents('j', [{ kind: 'fail', task, attempt: 0, reason: 'boom' }])
    }
    failOn(0, 'bad')
    failOn(1, 'bad')
    assert.deepEqual(fd.view('j')!.blocklist, [])
    assert.equal(fd.view('j')!.state, 'FAIL') // 2 of 20 tasks failed for good: 10%
    failOn(2, 'bad')
    assert.deepEqual(fd.view('j')!.blocklist, ['bad'])
    fd.appendTaskEvents(
      'j',
      [0, 1, 2].map((task) => ({ kind: 'requeue' as const, task, attempt: 1, reason: 'retry' })),
    )
    assert.equal(fd.view('j')!.state, 'QUEUE')
  })

  it('resolves unique id prefixes and names unknown and ambiguous ones', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('abc1'))
    fd.addJob(spec('abd2'))
    assert.equal(fd.resolveJobId('abc'), 'abc1')
    assert.throws(() => fd.resolveJobId('ab'), { name: 'AmbiguousJobIdError' })
    assert.throws(() => fd.resolveJobId('zz'), { name: 'UnknownJobError' })
  })
})

describe('removing a job', () => {
  it('leaves lists, prefixes and the stores for good, once no live job needs it', () => {
    const a = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    const b = new FarmDoc(new Y.Doc(), { peer: 'pB' })
    a.addJob(spec('jrender', 2))
    a.addJob(spec('jvideo', 1, { dependsOn: ['jrender'], inputsFrom: ['jrender'] }))
    a.addJob(spec('jother', 1))
    // the encode still needs the frames: refused, nothing written
    assert.throws(() => applyJobAction(a, 'jrender', 'remove'), /needed by jvideo/)
    assert.equal(a.read('jrender')!.control.length, 0)
    // cancelled is not gone: a retry would bring it back, waiting for frames nobody renders
    applyJobAction(a, 'jvideo', 'cancel')
    assert.throws(() => applyJobAction(a, 'jrender', 'remove'), /needed by jvideo: remove that first/)
    applyJobAction(a, 'jvideo', 'remove')
    assert.match(applyJobAction(a, 'jrender', 'remove'), /removed/)
    sync(a.doc, b.doc)
    for (const f of [a, b]) {
      assert.deepEqual(
        f.views().map((v) => v.id),
        ['jother'],
      )
      assert.throws(() => f.resolveJobId('jrender'), /job jrender was removed/)
      assert.throws(() => f.resolveJobId('jv'), /no job "jv"/)
      assert.deepEqual([...liveBlobJobs(f)].sort(), ['jother', 'jother.out'])
    }
    // a resume or retry said on another peer (before or after) does not bring it back
    b.appendJobEvent('jrender', 'retry')
    b.appendJobEvent('jrender', 'resume')
    sync(a.doc, b.doc)
    assert.equal(a.view('jrender')!.removed, true)
    assert.deepEqual(
      a.views().map((v) => v.id),
      ['jother'],
    )
  })
})

describe('removing a job, concurrently', () => {
  it('a job submitted on another peer meanwhile names the removed dependency it waits for', () => {
    const a = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    const b = new FarmDoc(new Y.Doc(), { peer: 'pB' })
    a.addJob(spec('jrender', 2))
    sync(a.doc, b.doc)
    applyJobAction(a, 'jrender', 'remove')
    b.addJob(spec('jvideo', 1, { dependsOn: ['jrender'] }))
    sync(a.doc, b.doc)
    for (const f of [a, b]) {
      const v = f.view('jvideo')!
      assert.equal(v.state, 'WAIT')
      assert.deepEqual(v.waitingOn, ['jrender (removed)'])
    }
  })
})

describe('level persistence', () => {
  it('a reopened store has every update, also after compaction', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'openfarm-store-'))
    try {
      const doc = new Y.Doc()
      const { store } = await DocStore.open(join(dir, 'db'), doc, { compactAfter: 10 })
      const fd = new FarmDoc(doc, { peer: 'pA' })
      fd.addJob(spec('j1', 50))
      for (let i = 0; i < 50; i++) fd.appendTaskEvents('j1', [{ kind: 'claim', task: i, attempt: 0, bid: i }])
      await store.flush()
      fd.appendJobEvent('j1', 'priority', 3)
      await store.close()

      const doc2 = new Y.Doc()
      const { store: store2, loaded } = await DocStore.open(join(dir, 'db'), doc2)
      assert.ok(loaded.updates < 10, `compaction kept the log short (${loaded.updates} entries)`)
      assert.equal(loaded.corrupt, 0)
      const fd2 = new FarmDoc(doc2, { peer: 'pB' })
      assert.deepEqual(fd2.view('j1'), fd.view('j1'))
      assert.equal(fd2.view('j1')!.priority, 3)
      await store2.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a database another node holds is said to be in use', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'openfarm-store-'))
    try {
      const { store } = await DocStore.open(join(dir, 'db'), new Y.Doc())
      await assert.rejects(DocStore.open(join(dir, 'db'), new Y.Doc()), {
        name: 'StoreError',
        message: /db: it is in use \(is a node already running with this data directory\?/,
      })
      await store.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('flushes racing a compaction neither compact again and again nor land before the snapshot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'openfarm-store-'))
    try {
      const doc = new Y.Doc()
      const { store } = await DocStore.open(join(dir, 'db'), doc, { compactAfter: 20 })
      const fd = new FarmDoc(doc, { peer: 'pA' })
      fd.addJob(spec('j1', 400))
      const flushes: Promise<void>[] = []
      for (let i = 0; i < 400; i++) {
        fd.appendTaskEvents('j1', [{ kind: 'claim', task: i, attempt: 0, bid: 1 }])
        flushes.push(store.flush()) // not awaited: flushes pile up behind the compactions
        if (i % 7 === 0) await new Promise((r) => setImmediate(r))
      }
      await Promise.all(flushes)
      assert.ok(store.compactions >= 1, `${store.compactions} compactions`)
      assert.ok(store.compactions <= 400 / 20 + 1, `${store.compactions} compactions for 400 entries`)
      fd.appendJobEvent('j1', 'hold')
      await store.flush()
      await store.close()
      const doc2 = new Y.Doc()
      const { store: s2, loaded } = await DocStore.open(join(dir, 'db'), doc2)
      assert.ok(loaded.updates <= 21, `${loaded.updates} entries after the last snapshot`)
      assert.equal(doc2.store.pendingStructs, null, 'nothing replayed before the snapshot it depends on')
      assert.deepEqual(new FarmDoc(doc2, { peer: 'pB' }).view('j1'), fd.view('j1'))
      await s2.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a corrupt entry on disk is reported and skipped; the rest loads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'openfarm-store-'))
    try {
      const { Level } = await import('level')
      const doc = new Y.Doc()
      const { store } = await DocStore.open(join(dir, 'db'), doc)
      new FarmDoc(doc, { peer: 'pA' }).addJob(spec('j1'))
      await store.close()
      const db = new Level<string, Uint8Array>(join(dir, 'db'), { valueEncoding: 'view' })
      await db.put('doc1!u!ffffffffffff', new Uint8Array([1, 2, 3, 250, 251]))
      await db.close()
      const doc2 = new Y.Doc()
      const { store: s2, loaded } = await DocStore.open(join(dir, 'db'), doc2)
      assert.equal(loaded.corrupt, 1)
      assert.deepEqual(new FarmDoc(doc2, { peer: 'pB' }).jobIds(), ['j1'])
      await s2.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
