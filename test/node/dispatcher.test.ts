// The dispatcher's start-up gate: a node claims nothing until its replica has caught up with a peer's
// (or it hears nobody for ALONE_GRACE_MS, or deadAfterMs passed). A node restarted from disk would
// otherwise claim, with a fresh bid, an attempt a peer already requeued from it and runs. And claiming
// ahead: the next task is claimed while the slot is still busy, so it starts the moment the slot frees.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { logger } from '@libp2p/logger'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import {
  ALONE_GRACE_MS,
  CLAIM_AHEAD_WAIT_MS,
  Dispatcher,
  type DispatcherInit,
  type SelfHost,
} from '../../src/node/dispatcher.ts'
import { STALL_COOLDOWN_MS, STALL_MS } from '../../src/node/stalls.ts'
import type { SchedHost } from '../../src/sched/types.ts'
import { spec } from '../crdt/fixtures.ts'

const host = (peer: string): SelfHost => ({
  peer,
  speed: 1,
  wattsLoaded: 100,
  price: null,
  apps: new Map([['echo', null]]),
  tags: new Set(),
  memoryMb: 8192,
  gpus: 0,
})

/** A dispatcher for peer `me` on `farm`, alone unless told; its clock moves with pass(at). */
function dispatcherOn(farm: FarmDoc, init: Partial<DispatcherInit> & Pick<DispatcherInit, 'execute'>) {
  let clock = 0
  const d = new Dispatcher({
    farm,
    slots: 1,
    self: () => host('me'),
    hosts: () => [],
    liveness: () => 'alive',
    settleMs: 50,
    deadAfterMs: 30_000,
    now: () => clock,
    wallNow: () => 1_700_000_000_000,
    log: logger('openfarm:test'),
    ...init,
  })
  const pass = (at: number) => {
    clock = at
    ;(d as unknown as { pass(): void }).pass()
  }
  return { d, pass, now: () => clock }
}

/** A dispatcher for peer `me` over a doc with one 2-task job; the clock and the gate are the test's. */
function setup(opts: { others: SchedHost[]; caughtUp?: () => boolean; connected?: () => boolean }) {
  const farm = new FarmDoc(new Y.Doc(), { peer: 'me' })
  farm.addJob(spec('j', 2))
  const { pass } = dispatcherOn(farm, {
    hosts: () => opts.others,
    // never called: the test looks at claims only
    execute: () => new Promise(() => undefined),
    ...(opts.caughtUp === undefined ? {} : { caughtUp: opts.caughtUp }),
    ...(opts.connected === undefined ? {} : { connected: opts.connected }),
  })
  const claims = () =>
    (farm.read('j')?.tasks ?? []).flat().filter((e) => e.kind === 'claim' && e.peer === 'me').length
  return { pass, claims }
}

describe('the dispatcher start-up gate', () => {
  it('claims nothing before the first sync when it hears other hosts, then claims', () => {
    let synced = false
    const t = setup({ others: [{ ...host('other'), speed: 0.5, slotFreeIn: [5] }], caughtUp: () => synced })
    t.pass(10)
    t.pass(ALONE_GRACE_MS + 10) // others are heard: the alone grace does not apply
    assert.equal(t.claims(), 0)
    synced = true
    t.pass(ALONE_GRACE_MS + 20)
    assert.equal(t.claims(), 1)
  })

  it('claims alone after the grace when it hears nobody', () => {
    const t = setup({ others: [], caughtUp: () => false })
    t.pass(10)
    assert.equal(t.claims(), 0)
    t.pass(ALONE_GRACE_MS)
    assert.equal(t.claims(), 1)
  })

  it('does not count itself alone while connected to a peer it has not heard or synced with yet', () => {
    let connected = true
    const t = setup({ others: [], caughtUp: () => false, connected: () => connected })
    t.pass(ALONE_GRACE_MS + 10)
    assert.equal(t.claims(), 0)
    connected = false
    t.pass(ALONE_GRACE_MS + 20)
    assert.equal(t.claims(), 1)
  })

  it('claims after deadAfterMs even if no sync ever completes', () => {
    const t = setup({ others: [{ ...host('other'), slotFreeIn: [5] }], caughtUp: () => false })
    t.pass(29_999)
    assert.equal(t.claims(), 0)
    t.pass(30_000)
    assert.equal(t.claims(), 1)
  })

  it('without a gate, claims at once', () => {
    const t = setup({ others: [] })
    t.pass(0)
    assert.equal(t.claims(), 1)
  })
})

describe('claiming ahead', () => {
  /** Peer `me` alone, one slot, a 3-task job; each run's end and progress are the test's to give. */
  function setup(claimAheadMs = 250, tasks = 3) {
    const farm = new FarmDoc(new Y.Doc(), { peer: 'me' })
    farm.addJob(spec('j', tasks))
    let clock = 0
    const runs: {
      task: number
      end: () => void
      progress: (fraction: number) => void
      release: () => void
    }[] = []
    const staging: string[] = []
    let changes = 0
    const d = new Dispatcher({
      farm,
      onRunningChange: () => changes++,
      stager: {
        stage: (s, task, attempt) => void staging.push(`stage ${s.id}/${task}/${attempt}`),
        unstage: async (job, task, attempt) => void staging.push(`unstage ${job}/${task}/${attempt}`),
        settled: async () => void staging.push('settled'),
      },
      slots: 1,
      self: () => host('me'),
      hosts: () => [],
      liveness: () => 'alive',
      execute: (_spec, task, _attempt, signal, progress, released) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => resolve({ ok: false, reason: 'aborted' }))
          runs.push({
            task,
            end: () => resolve({ ok: true, reason: null }),
            progress: (f) => progress({ fraction: f }),
            release: () => released?.(),
          })
        }),
      settleMs: 50,
      claimAheadMs,
      deadAfterMs: 30_000,
      now: () => clock,
      wallNow: () => 1_700_000_000_000,
      log: logger('openfarm:test'),
    })
    const events = (kind: string) =>
      (farm.read('j')?.tasks ?? []).flat().filter((e) => e.kind === kind && e.peer === 'me')
    const pass = (at: number) => {
      clock = at
      ;(d as unknown as { pass(): void }).pass()
    }
    /** Task 0 started at 60 and reported all its progress; task 1 claimed ahead at 100. */
    const claimAhead = () => {
      pass(0)
      pass(60)
      runs[0]!.progress(1)
      pass(100)
    }
    /** Lets the passes the dispatcher asked for run, until `done` (at most 10 turns). */
    const until = async (done: () => boolean) => {
      for (let i = 0; i < 10 && !done(); i++) await new Promise((r) => setImmediate(r))
    }
    return {
      pass,
      events,
      runs,
      farm,
      staging,
      claimAhead,
      until,
      stop: () => d.stop(),
      running: () => d.runningTasks(),
      changes: () => changes,
    }
  }

  it('claims the next task once the running one reported all its progress, and starts it when the slot frees', async () => {
    const t = setup()
    t.pass(0)
    t.pass(60) // settled: task 0 starts
    assert.equal(t.runs.length, 1)
    t.pass(100)
    assert.equal(t.events('claim').length, 1, 'nothing claimed ahead of a task far from its end')
    t.runs[0]!.progress(1)
    // reporting all its progress asks for a pass by itself: nothing else changed in the document
    await new Promise((r) => setImmediate(r))
    assert.equal(t.events('claim').length, 2, 'the next task is claimed while the slot is busy')
    t.pass(200)
    t.pass(300)
    assert.equal(t.runs.length, 1, 'settled, but it waits for the slot')
    assert.equal(t.events('claim').length, 2, 'one claim ahead per slot')
    t.runs[0]!.end()
    await new Promise((r) => setImmediate(r))
    t.pass(310)
    assert.equal(t.runs.length, 2, 'started as soon as the slot freed')
    assert.deepEqual(
      t.events('start').map((e) => e.task),
      [0, 1],
    )
  })

  it("starts the task claimed ahead once the running one's processes have exited, before its outputs are published", async () => {
    const t = setup()
    t.claimAhead()
    t.pass(200) // settled, waiting for the slot
    assert.equal(t.runs.length, 1)
    t.runs[0]!.release()
    assert.deepEqual(
      t.running().map((r) => r.task),
      [],
      'a run whose processes have exited holds no slot (heartbeats)',
    )
    await t.until(() => t.runs.length === 2)
    assert.equal(t.runs.length, 2, 'the next task started in the released slot')
    assert.deepEqual(
      t.events('start').map((e) => e.task),
      [0, 1],
    )
    assert.equal(t.events('done').length, 0, 'task 0 is still publishing')
    t.runs[0]!.release() // once is enough
    t.pass(300)
    assert.equal(t.events('claim').length, 2, 'the slot holds task 1 only: nothing more claimed')
    t.runs[0]!.end()
    await t.until(() => t.events('done').length > 0)
    assert.deepEqual(
      t.events('done').map((e) => e.task),
      [0],
    )
    assert.equal(t.events('requeue').length, 0)
  })

  it("writes the run's waiting output records in the update that starts the slot's next task", async () => {
    const t = setup()
    t.claimAhead()
    t.pass(200)
    const hash = 'a'.repeat(64)
    t.farm.recordOutput(
      'j',
      { path: 'f1.png', hash, size: 1, frame: 1, task: 0, attempt: 0 },
      { deferMs: 60_000 },
    )
    let updates = 0
    t.farm.doc.on('update', () => updates++)
    t.runs[0]!.release()
    await t.until(() => t.runs.length === 2)
    assert.equal(updates, 1, 'one update')
    assert.deepEqual(
      t.events('start').map((e) => e.task),
      [0, 1],
    )
    assert.deepEqual(
      t.farm.outputs('j').map((o) => o.path),
      ['f1.png'],
    )
  })

  it('writes them alone when the end of its processes starts nothing', async () => {
    const t = setup(250, 1)
    t.pass(0)
    t.pass(60)
    assert.equal(t.runs.length, 1)
    const hash = 'b'.repeat(64)
    t.farm.recordOutput(
      'j',
      { path: 'f1.png', hash, size: 1, frame: 1, task: 0, attempt: 0 },
      { deferMs: 60_000 },
    )
    t.runs[0]!.release()
    await t.until(() => t.farm.outputs('j').length > 0)
    assert.deepEqual(
      t.farm.outputs('j').map((o) => o.path),
      ['f1.png'],
      'at the release, before the run has ended',
    )
    assert.equal(t.events('done').length, 0)
  })

  it('announces what holds its slots when it changes, not the end of a run that only published', async () => {
    const t = setup()
    t.claimAhead()
    assert.equal(t.changes(), 1, 'task 0 started')
    t.pass(200)
    t.runs[0]!.release()
    await t.until(() => t.runs.length === 2)
    assert.equal(t.changes(), 3, 'task 0 let its slot go, task 1 took it')
    t.runs[0]!.end()
    await t.until(() => t.events('done').length > 0)
    assert.equal(t.changes(), 3, "task 0's end changes nothing a heartbeat says")
    t.runs[1]!.end()
    await t.until(() => t.events('done').length > 1)
    assert.equal(t.changes(), 4, 'task 1 ended holding its slot')
  })

  it('lets no more runs publish behind the running ones than it has slots', async () => {
    const t = setup()
    t.claimAhead()
    t.pass(200)
    t.runs[0]!.release()
    await t.until(() => t.runs.length === 2)
    assert.equal(t.runs.length, 2, 'task 1 started while task 0 publishes')
    t.runs[1]!.release()
    for (const at of [300, 400, 500, 600]) {
      t.pass(at)
      await t.until(() => t.runs.length === 3)
    }
    assert.equal(t.runs.length, 2, 'with 2 runs publishing on 1 slot, task 2 waits')
    assert.equal(t.running().length, 1, 'and the one publishing over the limit holds the slot (heartbeats)')
    t.runs[0]!.end()
    await t.until(() => t.events('done').length > 0)
    for (const at of [700, 800]) {
      t.pass(at)
      await t.until(() => t.runs.length === 3)
    }
    assert.equal(t.runs.length, 3, 'task 2 starts once task 0 is done')
  })

  it('claims the next task in the update that starts a task shorter than claimAheadMs', () => {
    const t = setup(60_000)
    t.pass(0)
    const updates: Uint8Array[] = []
    t.farm.doc.on('update', (u: Uint8Array) => updates.push(u))
    t.pass(60) // settled: task 0 starts, and its slot, due to free within claimAheadMs, takes task 1
    assert.equal(t.runs.length, 1)
    assert.deepEqual(
      t.events('start').map((e) => e.task),
      [0],
    )
    assert.deepEqual(
      t.events('claim').map((e) => e.task),
      [0, 1],
    )
    assert.equal(updates.length, 1, 'start of task 0 and claim of task 1: one update')
  })

  it("records a run's end and the start of the task claimed ahead in one update", async () => {
    const t = setup()
    t.claimAhead()
    t.pass(200) // settled, waiting for the slot
    const updates: Uint8Array[] = []
    t.farm.doc.on('update', (u: Uint8Array) => updates.push(u))
    t.runs[0]!.end()
    // the end is not recorded on its own: the pass it asks for records it with the start
    await t.until(() => t.events('done').length > 0)
    assert.equal(t.events('done').length, 1)
    assert.equal(t.runs.length, 2)
    assert.equal(updates.length, 1, 'done of task 0 and start of task 1: one update')
    assert.deepEqual(
      t.events('start').map((e) => e.task),
      [0, 1],
    )
    assert.equal(t.events('requeue').length, 0, 'the ended attempt was not taken for a lost one')
  })

  it('gets a claimed task ready from its claim on, once; a task given back is cleared', async () => {
    const t = setup()
    t.pass(0)
    assert.deepEqual(t.staging, ['stage j/0/0'], 'at its claim: the settle window overlaps the fetch')
    t.pass(60)
    assert.equal(t.runs.length, 1, 'task 0 started: its run takes what was got ready')
    t.runs[0]!.progress(1)
    t.pass(100)
    assert.deepEqual(t.staging, ['stage j/0/0', 'stage j/1/0'], 'claimed ahead: at once, its slot still busy')
    t.pass(200)
    t.pass(300)
    assert.deepEqual(t.staging, ['stage j/0/0', 'stage j/1/0'], 'once')
    t.runs[0]!.end()
    await t.until(() => t.runs.length >= 2)
    assert.equal(t.runs.length, 2, 'task 1 started: its run takes what was got ready')
    assert.deepEqual(t.staging, ['stage j/0/0', 'stage j/1/0'])

    const u = setup()
    u.claimAhead()
    u.pass(200)
    u.pass(100 + 50 + 250 + CLAIM_AHEAD_WAIT_MS) // the slot stayed busy: given back
    assert.equal(u.events('requeue').length, 1)
    assert.deepEqual(u.staging, ['stage j/0/0', 'stage j/1/0', 'unstage j/1/0'])
  })

  it('clears what it got ready for a claim that a better bid took while it settled', async () => {
    const t = setup()
    t.pass(0)
    assert.deepEqual(t.staging, ['stage j/0/0'])
    // another peer's lower bid for the same attempt arrives within the settle window
    new FarmDoc(t.farm.doc, { peer: 'aa' }).appendTaskEvents('j', [
      { kind: 'claim', task: 0, attempt: 0, bid: 0 },
    ])
    t.pass(60)
    assert.equal(t.runs.length, 0, 'task 0 is not started here')
    await t.until(() => t.staging.length >= 2)
    // (and the same pass claims task 1 for the free slot)
    assert.deepEqual(t.staging.slice(0, 2), ['stage j/0/0', 'unstage j/0/0'])
  })

  it('records the ends of runs cut short by stop, once their clean-up is done', async () => {
    const t = setup()
    t.pass(0)
    t.pass(60)
    assert.equal(t.runs.length, 1)
    await t.stop()
    assert.deepEqual(t.staging, ['stage j/0/0', 'settled'], "stop waited for the stager's clean-up")
    const back = t.events('requeue')
    assert.equal(back.length, 1)
    assert.equal(back[0]!.reason, 'shutdown')
  })

  it('hands back at stop the task it claimed ahead, with the one it runs, in one update', async () => {
    const t = setup()
    t.claimAhead()
    assert.equal(t.events('claim').length, 2)
    let updates = 0
    t.farm.doc.on('update', () => updates++)
    await t.stop()
    const back = t.events('requeue')
    assert.deepEqual(back.map((e) => [e.task, e.reason]).sort(), [
      [0, 'shutdown'],
      [1, 'shutdown'],
    ])
    assert.equal(updates, 1, 'one update')
    const view = t.farm.view('j')!
    assert.deepEqual(
      view.tasks.slice(0, 2).map((v) => v.state),
      ['QUEUE', 'QUEUE'],
    )
  })

  it('gives a task claimed ahead back when the slot stays busy, and claims no more ahead of that run', () => {
    const t = setup()
    t.claimAhead()
    assert.equal(t.events('claim').length, 2)
    t.pass(100 + 50 + 250 + CLAIM_AHEAD_WAIT_MS - 1)
    assert.equal(t.events('requeue').length, 0, 'not before settle + claimAheadMs + CLAIM_AHEAD_WAIT_MS')
    t.pass(100 + 50 + 250 + CLAIM_AHEAD_WAIT_MS)
    const requeues = t.events('requeue')
    assert.equal(requeues.length, 1)
    assert.equal(requeues[0]!.reason, 'slot busy')
    t.pass(100 + 60 + 250 + CLAIM_AHEAD_WAIT_MS)
    assert.equal(t.events('claim').length, 2, 'no new claim ahead of the same run')
    assert.equal(t.runs.length, 1)
  })
})

describe('a task requeued while its run here is still ending', () => {
  it('is not claimed again until that run has ended: never two runs of one task on a node', async () => {
    const farm = new FarmDoc(new Y.Doc(), { peer: 'me' })
    farm.addJob(spec('j', 1))
    const runs: { attempt: number; aborted: boolean; end: () => void }[] = []
    const { d, pass } = dispatcherOn(farm, {
      slots: 2,
      // a run that, aborted, takes its time to end (Blender given SIGTERM), until the test ends it
      execute: (_spec, _task, attempt, signal) =>
        new Promise((resolve) => {
          const run = { attempt, aborted: false, end: () => resolve({ ok: false, reason: 'killed' }) }
          signal.addEventListener('abort', () => {
            run.aborted = true
          })
          runs.push(run)
        }),
    })
    const claims = () => (farm.read('j')?.tasks[0] ?? []).filter((e) => e.kind === 'claim')
    try {
      pass(0)
      pass(60)
      assert.equal(runs.length, 1, 'attempt 1 runs')
      // a peer requeued it (it thought this node dead): attempt 2, queued, and the auction gives it here
      farm.appendTaskEvents('j', [{ kind: 'requeue', task: 0, attempt: runs[0]!.attempt, reason: 'dead' }])
      pass(100)
      assert.equal(runs[0]!.aborted, true, 'the run of attempt 1 is stopped')
      pass(200)
      pass(300)
      assert.equal(claims().length, 1, 'attempt 2 is not claimed while attempt 1 still ends here')
      assert.equal(runs.length, 1)
      assert.deepEqual(
        d.runningTasks().map((r) => r.attempt),
        [runs[0]!.attempt],
        'the ending run still holds its slot',
      )
      runs[0]!.end()
      await new Promise((r) => setImmediate(r))
      pass(400)
      assert.equal(claims().length, 2, 'claimed once that run ended')
      pass(460)
      assert.equal(runs.length, 2)
      assert.equal(runs[1]!.attempt, runs[0]!.attempt + 1)
      assert.deepEqual(
        d.runningTasks().map((r) => r.attempt),
        [runs[1]!.attempt],
      )
    } finally {
      for (const r of runs) r.end()
      await d.stop()
    }
  })
})

describe('a host that wins tasks and never claims them', () => {
  /** Peer `me` (one slot, speed 1) and a host ten times faster that announces a free slot. */
  function setup() {
    const doc = new Y.Doc()
    const farm = new FarmDoc(doc, { peer: 'me' })
    const fast = new FarmDoc(doc, { peer: 'fast' })
    farm.addJob(spec('j', 1))
    const { d, pass } = dispatcherOn(farm, {
      hosts: () => [{ ...host('fast'), speed: 10, slotFreeIn: [0] }],
      execute: () => new Promise(() => undefined),
    })
    const claimsBy = (peer: string) =>
      (farm.read('j')?.tasks ?? []).flat().filter((e) => e.kind === 'claim' && e.peer === peer).length
    return { d, fast, pass, claimsBy }
  }

  it('is left out of the auction once it leaves a task unclaimed for STALL_MS, and gets another chance later', () => {
    const t = setup()
    for (const at of [0, 1_000, STALL_MS - 1]) t.pass(at)
    assert.equal(t.claimsBy('me'), 0, 'the fast host wins it, and may claim it meanwhile')
    t.pass(STALL_MS)
    assert.deepEqual(t.d.stalls.leftOut(STALL_MS), ['fast'])
    t.pass(STALL_MS + 1)
    assert.equal(t.claimsBy('me'), 1, 'the task goes to the next best host')
    assert.deepEqual(t.d.stalls.leftOut(STALL_MS + STALL_COOLDOWN_MS), [], 'back after the cooldown')
  })

  it('is not left out when it claims what it wins', () => {
    const t = setup()
    t.pass(0)
    t.pass(1_000)
    t.fast.appendTaskEvents('j', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
    t.pass(STALL_MS + 1_000)
    assert.deepEqual(t.d.stalls.leftOut(STALL_MS + 1_000), [])
    assert.equal(t.claimsBy('me'), 0)
  })
})

describe('a run stopped because its task is no longer ours', () => {
  it('says whether the task or its job was cancelled or held', () => {
    const farm = new FarmDoc(new Y.Doc(), { peer: 'me' })
    const signals: AbortSignal[] = []
    const { d, pass, now } = dispatcherOn(farm, {
      execute: (_spec, _task, _attempt, signal) => {
        signals.push(signal)
        return new Promise(() => undefined)
      },
    })
    const stopWith = (job: string, stop: () => void) => {
      farm.addJob(spec(job, 1))
      pass(now() + 1) // claims
      pass(now() + 100) // starts
      assert.equal(farm.view(job)!.tasks[0]!.state, 'RUN')
      stop()
      pass(now() + 1)
      const reason = (signals.at(-1)!.reason as Error).message
      // the run never ends here: forget it, so the next job gets the slot
      ;(d as unknown as { running: Map<string, unknown> }).running.clear()
      return reason
    }
    assert.equal(
      stopWith('j1', () => farm.appendTaskEvents('j1', [{ kind: 'cancel', task: 0, attempt: 0 }])),
      'the task was cancelled',
    )
    assert.equal(
      stopWith('j2', () => farm.appendJobEvent('j2', 'cancel')),
      'the job was cancelled',
    )
    assert.equal(
      stopWith('j3', () => farm.appendJobEvent('j3', 'hold')),
      'the job was put on hold',
    )
  })
})
