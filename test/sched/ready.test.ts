import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { DEFAULT_SCHED } from '../../src/crdt/schedspec.ts'
import { freeSeats, readyQueue } from '../../src/sched/ready.ts'
import { spec } from '../crdt/fixtures.ts'

describe('the ready queue', () => {
  it('takes runnable jobs by priority, then age; skips held, cancelled, waiting and failed jobs', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('old', 2, { submittedAt: 1 }))
    fd.addJob(spec('new', 2, { submittedAt: 2 }))
    fd.addJob(spec('urgent', 1, { submittedAt: 3, priority: 5 }))
    fd.addJob(spec('held', 1))
    fd.appendJobEvent('held', 'hold')
    fd.addJob(spec('later', 1, { sched: { ...DEFAULT_SCHED, notBefore: 10_000 } }))
    const keys = (now: number) => readyQueue(fd.views(), now, 100).tasks.map((t) => t.key)
    assert.deepEqual(keys(0), ['urgent/0', 'old/0', 'old/1', 'new/0', 'new/1'])
    assert.deepEqual(keys(10_000).length, 6)
    assert.deepEqual(readyQueue(fd.views(), 0, 2).tasks.length, 2)
  })

  it('estimates work per frame from what finished tasks reported; carries blocklists and failed hosts', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('j', 4, { maxRetries: 3 })) // frames 1-8, chunk 2
    fd.appendTaskEvents('j', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    fd.appendTaskEvents('j', [{ kind: 'done', task: 0, attempt: 0, work: 6 }])
    const other = new FarmDoc(fd.doc, { peer: 'flaky' })
    other.appendTaskEvents('j', [{ kind: 'claim', task: 1, attempt: 0, bid: 1 }])
    other.appendTaskEvents('j', [{ kind: 'fail', task: 1, attempt: 0, reason: 'x' }])
    const { tasks } = readyQueue(fd.views(), 0, 100)
    assert.deepEqual(
      tasks.map((t) => [t.key, t.work]),
      [
        ['j/1', 6],
        ['j/2', 6],
        ['j/3', 6],
      ],
    )
    assert.deepEqual([...(tasks[0]!.avoid ?? [])], ['flaky'])
  })

  it("learns the spread of the job's work once 3 tasks reported theirs, and sums the whole queue", () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.addJob(spec('j', 6)) // frames 1-12, chunk 2
    const done = (task: number, work: number) => {
      fd.appendTaskEvents('j', [{ kind: 'claim', task, attempt: 0, bid: 1 }])
      fd.appendTaskEvents('j', [{ kind: 'done', task, attempt: 0, work }])
    }
    done(0, 4)
    done(1, 8)
    let q = readyQueue(fd.views(), 0, 1)
    assert.equal(q.tasks[0]!.workSd, undefined, 'two samples tell no spread')
    done(2, 12) // per frame: 2, 4, 6 -> mean 4, sd 2
    q = readyQueue(fd.views(), 0, 1)
    assert.deepEqual(
      q.tasks.map((t) => [t.key, t.work, t.workSd]),
      [['j/3', 8, 4]],
    )
    assert.equal(q.queuedWork, 3 * 8, 'the head is 1 task; the queue holds 3 of 8 units')
  })

  it('counts license seats held by claimed and running attempts', () => {
    const fd = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    fd.setLicense('redshift', 2)
    fd.addJob(spec('j', 3, { sched: { ...DEFAULT_SCHED, license: 'redshift' } }))
    fd.appendTaskEvents('j', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    assert.deepEqual([...freeSeats(fd.views(), fd.licenses())], [['redshift', 1]])
  })
})
