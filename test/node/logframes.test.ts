// logFrames, the node's side of `openfarm logs --follow`: which attempt it shows, when it goes on to
// the next one and when it ends. The node here is a stand-in: the real reducer over a task's events,
// a Y.Doc for change events, and a scripted Log Router per attempt (the real one over libp2p is
// tested in test/protocol/logs.test.ts, and a follow end to end in test/render).
import assert from 'node:assert/strict'
import { it } from 'node:test'
import * as Y from 'yjs'
import { reduceTask } from '../../src/crdt/reducer.ts'
import type { TaskEvent } from '../../src/crdt/schema.ts'
import { logFrames } from '../../src/node/submitfiles.ts'

async function fakeNode() {
  // two peers' ids (logFrames parses the one it reads from)
  const A = '12D3KooWHEosNNb3xJ8gS7gwLY1ugXGVtBEePpaq5xTtaDs4H1ia'
  const B = '12D3KooWLoBoJiWhZLhUTnXAAg6t1gxiq6h4jrTT7Wzh9MsovTUV'
  const doc = new Y.Doc()
  const events: TaskEvent[] = []
  let lc = 0
  const add = (kind: TaskEvent['kind'], attempt: number, peer: string, reason?: string) => {
    events.push({ kind, task: 0, attempt, peer, lc: lc++, ...(reason ? { reason } : {}) } as TaskEvent)
    doc.getMap('x').set('n', lc) // an update, as a replicated event would make
  }
  // per attempt: lines to give, and when to end
  const scripts = new Map<
    number,
    {
      lines: string[]
      end: Promise<{ ok: boolean; reason?: string }>
      reset?: boolean
      /** Breaks off once, after this many lines (a host restarting); then serves from `from`. */
      breakAfter?: number
    }
  >()
  const node = {
    farm: {
      doc,
      read: () => ({ spec: { taskCount: 1 }, tasks: [events] }),
      view: () => ({ tasks: [reduceTask(0, events, 3)] }),
    },
    hosts: () => [],
    libp2p: {
      services: {
        logs: {
          async *tail(_peer: unknown, req: { attempt: number; from: number }) {
            const s = scripts.get(req.attempt)
            if (s === undefined) throw new Error(`no script for attempt ${req.attempt}`)
            if (s.reset) throw new Error('the peer reset the log stream')
            for (let seq = req.from; seq < s.lines.length; seq++) {
              if (s.breakAfter !== undefined && seq === s.breakAfter) {
                s.breakAfter = undefined
                throw new Error('the peer closed the log stream before its end frame')
              }
              yield { seq, t: 0, stream: 'stdout', line: s.lines[seq] }
            }
            const e = await s.end
            yield { end: true, finished: true, ...e }
          },
        },
      },
    },
  }
  return { A, B, add, scripts, node: node as never }
}

async function collect(gen: AsyncGenerator<Record<string, unknown>>, ms: number) {
  const out: Record<string, unknown>[] = []
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))
  for (;;) {
    const r = await Promise.race([gen.next(), timer])
    if (r === 'timeout') return { out, ended: false }
    if (r.done) return { out, ended: true }
    out.push(r.value)
  }
}

it('follow ends when the task is DONE, even if the log END arrived before the done event', async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  f.scripts.set(0, { lines: ['Fra:1 ...', 'Saved: frame_0001.png'], end: Promise.resolve({ ok: true }) })
  const abort = new AbortController()
  const gen = logFrames(f.node, 'j1', 0, { follow: true, signal: abort.signal })
  // the worker's 'done' event reaches this node a moment after its log stream said END
  setTimeout(() => f.add('done', 0, f.A), 50)
  const r = await collect(gen, 1500)
  abort.abort()
  assert.equal(r.ended, true, 'follow still waits for attempt 1 of a DONE task')
  assert.deepEqual(
    r.out.map((x) => x.kind),
    ['attempt', 'line', 'line', 'end', 'task'],
  )
  assert.equal(r.out.at(-1)!.state, 'DONE')
})

it('follow goes on to the attempt that actually runs when one attempt was claimed but never started', async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  let failNow = (_: { ok: boolean; reason?: string }) => {}
  f.scripts.set(0, { lines: ['attempt 0 line'], end: new Promise((r) => (failNow = r)) })
  f.scripts.set(2, { lines: ['attempt 2 line'], end: Promise.resolve({ ok: true }) })
  const abort = new AbortController()
  const gen = logFrames(f.node, 'j1', 0, { follow: true, signal: abort.signal })
  setTimeout(() => {
    f.add('fail', 0, f.A, 'exit 1') // attempt 1 next
    failNow({ ok: false, reason: 'exit 1' })
    setTimeout(() => {
      f.add('claim', 1, f.B) // claimed ahead by B...
      f.add('requeue', 1, f.B, 'slot busy') // ...and given back: attempt 2
      f.add('claim', 2, f.A)
      f.add('start', 2, f.A)
      setTimeout(() => f.add('done', 2, f.A), 50)
    }, 50)
  }, 50)
  const r = await collect(gen, 1500)
  abort.abort()
  assert.deepEqual(
    r.out.map((x) => (x.kind === 'line' ? x.line : x.kind === 'attempt' ? `attempt ${x.attempt}` : x.kind)),
    ['attempt 0', 'attempt 0 line', 'end', 'attempt 2', 'attempt 2 line', 'end', 'task'],
  )
  assert.equal(r.ended, true)
})

it('follow of a task cancelled before it started ends, saying so', async () => {
  const f = await fakeNode()
  const abort = new AbortController()
  const gen = logFrames(f.node, 'j1', 0, { follow: true, signal: abort.signal })
  setTimeout(() => f.add('cancel', 0, f.A), 50)
  const r = await collect(gen, 1500)
  abort.abort()
  assert.equal(r.ended, true)
  assert.deepEqual(r.out, [{ kind: 'task', state: 'CANCEL' }])
})

it('follow goes on to the next attempt when the lines of one cannot be read (its host stopped)', async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  f.scripts.set(0, { lines: [], end: new Promise(() => {}), reset: true })
  f.scripts.set(1, { lines: ['attempt 1 line'], end: Promise.resolve({ ok: true }) })
  const abort = new AbortController()
  const gen = logFrames(f.node, 'j1', 0, { follow: true, signal: abort.signal })
  setTimeout(() => {
    f.add('requeue', 0, f.A, 'shutdown') // the stopping worker hands its attempt back
    f.add('claim', 1, f.B)
    f.add('start', 1, f.B)
    setTimeout(() => f.add('done', 1, f.B), 50)
  }, 50)
  const r = await collect(gen, 1500)
  abort.abort()
  assert.equal(r.ended, true)
  assert.deepEqual(
    r.out.map((x) => (x.kind === 'error' ? `error following=${x.following}` : x.kind)),
    ['attempt', 'error following=true', 'attempt', 'line', 'end', 'task'],
  )
})

it('follow reads an attempt again from where it broke off while it still runs (its host restarting)', async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  let finish = (_: { ok: boolean }) => {}
  f.scripts.set(0, { lines: ['one', 'two', 'three'], end: new Promise((r) => (finish = r)), breakAfter: 2 })
  const abort = new AbortController()
  const gen = logFrames(f.node, 'j1', 0, { follow: true, signal: abort.signal })
  setTimeout(() => {
    finish({ ok: true })
    f.add('done', 0, f.A)
  }, 1500) // after the first read again (1 s)
  const r = await collect(gen, 5000)
  abort.abort()
  assert.equal(r.ended, true)
  assert.deepEqual(
    r.out.map((x) => (x.kind === 'line' ? x.line : x.kind)),
    ['attempt', 'one', 'two', 'error', 'three', 'end', 'task'],
  )
})

it('without follow, an attempt not ended yet is read as such', async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  f.scripts.set(0, { lines: ['so far'], end: Promise.resolve({ ok: true }) })
  const r = await collect(
    logFrames(f.node, 'j1', 0, { follow: false, signal: new AbortController().signal }),
    1500,
  )
  assert.equal(r.ended, true)
  assert.deepEqual(
    r.out.map((x) => x.kind),
    ['attempt', 'line', 'end'],
  )
})

it("an earlier attempt's header says how that attempt ended, not the task's state now", async () => {
  const f = await fakeNode()
  f.add('claim', 0, f.A)
  f.add('start', 0, f.A)
  f.add('fail', 0, f.A, 'exit 1')
  f.add('claim', 1, f.B)
  f.add('start', 1, f.B)
  f.add('requeue', 1, f.B, 'dead')
  f.add('claim', 2, f.A)
  f.add('start', 2, f.A)
  f.add('done', 2, f.A)
  for (const [attempt, state] of [
    [0, 'FAIL'],
    [1, 'REQUEUED'],
    [2, 'DONE'],
  ] as const) {
    f.scripts.set(attempt, { lines: [], end: Promise.resolve({ ok: attempt === 2 }) })
    const r = await collect(
      logFrames(f.node, 'j1', 0, { attempt, follow: false, signal: new AbortController().signal }),
      1500,
    )
    assert.equal(r.out[0]!.state, state, `attempt ${attempt}`)
  }
})
