// The Log Router's wire on real libp2p nodes on 127.0.0.1 (tcp, noise, yamux, identify, logs), each
// with its own LogStore: A runs the attempt, C (which holds no lines) follows it live, B reads as well.
// Conditions are polled with a deadline, never slept on.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { identify } from '@libp2p/identify'
import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { createLibp2p } from 'libp2p'
import { LogStore } from '../../src/node/logstore.ts'
import {
  type Answer,
  decodeAnswer,
  encodeRequest,
  FrameType,
  isLogEnd,
  type LogEnd,
  type LogLine,
  logService,
  PROTOCOL,
} from '../../src/protocol/logs/index.ts'
import { tempDir, waitFor } from '../helpers.ts'
import { loopbackStack } from '../loopback.ts'

type Peer = Awaited<ReturnType<typeof makePeer>>
const cleanup: Array<() => Promise<unknown>> = []

async function makePeer(name: string, maxServing?: number) {
  const dir = await tempDir(`logs-${name}`)
  const store = await LogStore.open(dir.path, { flushMs: 10 })
  const node = await createLibp2p({
    ...loopbackStack(),
    services: {
      identify: identify(),
      logs: logService({
        store,
        requestTimeoutMs: 2_000,
        ...(maxServing === undefined ? {} : { maxServing }),
      }),
    },
  })
  cleanup.push(async () => {
    await node.stop()
    await store.close()
    await dir.remove()
  })
  return { node, store, logs: node.services.logs }
}

/** What a peer's own address book would hold after discovery: the address, no connection. */
async function learn(who: Peer, of: Peer): Promise<void> {
  await who.node.peerStore.merge(of.node.peerId, { multiaddrs: of.node.getMultiaddrs() })
}

async function collect(items: AsyncIterable<LogLine | LogEnd>) {
  const lines: LogLine[] = []
  let end: LogEnd | undefined
  for await (const x of items) {
    if (isLogEnd(x)) end = x
    else lines.push(x)
  }
  return { lines, end }
}

/** Sends raw frames on a new stream (its write side open until the answer ends) and decodes the answer. */
async function raw(from: Peer, to: Peer, frames: Uint8Array[], opts: { read?: boolean } = {}) {
  const stream: Stream = await from.node.dialProtocol(to.node.getMultiaddrs(), PROTOCOL)
  let release = (): void => {}
  const leave = new Promise<void>((resolve) => {
    release = resolve
  })
  void pipe(
    (async function* () {
      yield* frames
      await leave
    })(),
    (s) => lp.encode(s),
    stream.sink,
  ).catch(() => {})
  const answers: Answer[] = []
  const read = async () => {
    try {
      for await (const f of lp.decode(stream.source, { maxDataLength: 1024 * 1024 }))
        answers.push(decodeAnswer(f))
    } finally {
      release()
    }
    return answers
  }
  return opts.read === false ? { stream, read, answers } : { stream, read, answers: await read() }
}

const text = (lines: readonly LogLine[]) => lines.map((l) => l.line)
const REF = { job: 'render-1', task: 2, attempt: 1 }

describe('logs protocol', () => {
  let A: Peer
  let B: Peer
  let C: Peer
  before(async () => {
    ;[A, B, C] = await Promise.all([makePeer('a'), makePeer('b'), makePeer('c')])
    await Promise.all([learn(C, A), learn(B, A)])
  })
  after(async () => {
    for (const fn of cleanup) await fn().catch(() => {})
  })

  it('C, which holds no lines, follows A’s attempt live to its end frame; B reads it meanwhile', async () => {
    for (let i = 0; i < 3; i++) A.store.append(REF, 'stdout', `Fra:${i} early`)
    assert.equal(C.node.getConnections(A.node.peerId).length, 0)
    await assert.rejects(C.store.status(REF).then((s) => s ?? Promise.reject(new Error('none'))))
    const got: Array<LogLine | LogEnd> = []
    const following = (async () => {
      for await (const x of C.logs.tail(A.node.peerId, { ...REF, from: 0, follow: true })) got.push(x)
    })()
    await waitFor('the early lines at C', () => got.length === 3)
    assert.ok(C.node.getConnections(A.node.peerId).length > 0, 'tail dialled A')
    A.store.append(REF, 'stderr', 'Fra:3 live')
    A.store.append(REF, 'stdout', 'Fra:4 live')
    await waitFor('the live lines at C', () => got.length === 5)
    const midway = await collect(B.logs.tail(A.node.peerId, { ...REF, from: 0, follow: false }))
    assert.equal(midway.lines.length, 5)
    assert.deepEqual(midway.end, { end: true, finished: false })
    A.store.append(REF, 'stdout', 'Saved: frame_0004.png')
    await A.store.end(REF, { ok: true })
    await following
    const lines = got.filter((x): x is LogLine => !isLogEnd(x))
    assert.deepEqual(text(lines), [
      'Fra:0 early',
      'Fra:1 early',
      'Fra:2 early',
      'Fra:3 live',
      'Fra:4 live',
      'Saved: frame_0004.png',
    ])
    assert.deepEqual(
      lines.map((l) => [l.seq, l.stream]),
      [
        [0, 'stdout'],
        [1, 'stdout'],
        [2, 'stdout'],
        [3, 'stderr'],
        [4, 'stdout'],
        [5, 'stdout'],
      ],
    )
    assert.deepEqual(got.at(-1), { end: true, finished: true, ok: true })
    await waitFor('A to finish serving', () => A.logs.stats.serving === 0)
  })

  it('after the attempt ended, a reading (with or without follow) returns everything, or from a seq', async () => {
    const ref = { ...REF, attempt: 2 }
    for (let i = 0; i < 1200; i++) A.store.append(ref, i % 3 === 0 ? 'stderr' : 'stdout', `line ${i}`)
    await A.store.end(ref, { ok: false, reason: 'Blender exited with code 1' })
    for (const follow of [true, false]) {
      const r = await collect(C.logs.tail(A.node.peerId, { ...ref, from: 0, follow }))
      assert.equal(r.lines.length, 1200)
      assert.deepEqual(
        r.lines.map((l) => l.seq),
        Array.from({ length: 1200 }, (_, i) => i),
      )
      assert.deepEqual(r.end, { end: true, finished: true, ok: false, reason: 'Blender exited with code 1' })
    }
    const tail = await collect(B.logs.tail(A.node.peerId, { ...ref, from: 1195, follow: false }))
    assert.deepEqual(text(tail.lines), ['line 1195', 'line 1196', 'line 1197', 'line 1198', 'line 1199'])
    const own = await collect(A.logs.tail(A.node.peerId, { ...ref, from: 1199, follow: true }))
    assert.deepEqual(text(own.lines), ['line 1199'], 'a tail of this node reads its own store')
  })

  it('a follow of an attempt with nothing to send yet is acknowledged at once by an empty LINES frame', async () => {
    const ref = { ...REF, attempt: 5 }
    A.store.start(ref)
    const quiet = await raw(C, A, [encodeRequest({ ...ref, from: 0, follow: true })], { read: false })
    const reading = quiet.read()
    await waitFor('the acknowledgement', () => quiet.answers.length === 1)
    assert.deepEqual(quiet.answers[0], { type: 'lines', lines: [] })
    A.store.append(ref, 'stdout', 'first words')
    await A.store.end(ref, { ok: true })
    await reading
    assert.deepEqual(
      quiet.answers.slice(1).map((a) => a.type),
      ['lines', 'end'],
    )
  })

  it('an unknown attempt says so, as a frame and as UnknownAttemptError', async () => {
    const req = { ...REF, attempt: 9, from: 0, follow: true }
    await assert.rejects(collect(C.logs.tail(A.node.peerId, req)), { name: 'UnknownAttemptError' })
    const { answers } = await raw(C, A, [encodeRequest(req)])
    assert.equal(answers.length, 1)
    assert.equal(answers[0]?.type, 'error')
    assert.equal(answers[0]?.type === 'error' && answers[0].error, 'unknown-attempt')
  })

  it('a malformed request gets an error frame, not a crash, and A keeps serving', async () => {
    const json = (type: number, body: string) => new Uint8Array([type, ...new TextEncoder().encode(body)])
    const good = { ...REF, from: 0, follow: false }
    const bad = [
      json(FrameType.REQUEST, '{not json'),
      json(FrameType.REQUEST, JSON.stringify({ ...good, job: '../../etc/passwd' })),
      json(FrameType.REQUEST, JSON.stringify({ ...good, task: -1 })),
      json(FrameType.REQUEST, JSON.stringify({ ...good, attempt: 1e12 })),
      json(FrameType.REQUEST, JSON.stringify({ ...good, from: 'zero' })),
      json(FrameType.REQUEST, JSON.stringify([1, 2, 3])),
      json(FrameType.LINES, '[]'),
      new Uint8Array(0),
      json(FrameType.REQUEST, JSON.stringify({ ...good, job: 'x'.repeat(2000) })),
    ]
    for (const frame of bad) {
      const { answers } = await raw(B, A, [frame])
      assert.equal(answers.length, 1, `one answer to ${new TextDecoder().decode(frame.subarray(1, 40))}`)
      const a = answers[0]
      assert.ok(a?.type === 'error' && a.error === 'bad-request', JSON.stringify(a))
    }
    const before = A.logs.stats.refused
    assert.ok(before >= bad.length)
    const r = await collect(B.logs.tail(A.node.peerId, good))
    assert.equal(r.lines.length, 6, 'A still serves')
    await assert.rejects(collect(B.logs.tail(A.node.peerId, { ...good, job: 'no/slash' })), {
      name: 'InvalidLogRequestError',
    })
  })

  it('a node serving its limit of requests answers busy', async () => {
    const D = await makePeer('d', 1)
    await learn(C, D)
    const ref = { ...REF, attempt: 4 }
    D.store.append(ref, 'stdout', 'running')
    const got: LogLine[] = []
    const controller = new AbortController()
    const following = collect(
      (async function* () {
        for await (const x of C.logs.tail(D.node.peerId, { ...ref, from: 0, follow: true }, controller)) {
          if (!isLogEnd(x)) got.push(x)
          yield x
        }
      })(),
    )
    await waitFor('the follow to start', () => got.length === 1)
    await assert.rejects(
      collect(C.logs.tail(D.node.peerId, { ...ref, from: 0, follow: false })),
      (err: Error) => {
        assert.equal(err.name, 'LogRequestRefusedError')
        assert.equal((err as Error & { code: string }).code, 'busy')
        return true
      },
    )
    controller.abort()
    await assert.rejects(following)
    await waitFor('D to be free', () => D.logs.stats.serving === 0)
    const r = await collect(C.logs.tail(D.node.peerId, { ...ref, from: 0, follow: false }))
    assert.deepEqual(text(r.lines), ['running'])
  })

  it('a node that stops while serving a follow stops at once, and the follower gets an error', async () => {
    const E = await makePeer('e')
    await learn(C, E)
    const ref = { ...REF, attempt: 6 }
    E.store.append(ref, 'stdout', 'rendering')
    const got: LogLine[] = []
    const following = (async () => {
      for await (const x of C.logs.tail(E.node.peerId, { ...ref, from: 0, follow: true })) {
        if (!isLogEnd(x)) got.push(x)
      }
    })()
    const failed = assert.rejects(following, { name: 'UnexpectedLogEndError' })
    await waitFor('the follow to run', () => got.length === 1)
    const t0 = performance.now()
    await E.node.stop()
    assert.ok(performance.now() - t0 < 3_000, 'stop() did not wait on the follower')
    await failed
  })

  it('a node that ends its attempts and then stops still sends their followers the end frame', async () => {
    const F = await makePeer('f')
    await learn(C, F)
    const ref = { ...REF, attempt: 7 }
    F.store.append(ref, 'stdout', 'rendering')
    const got: (LogLine | LogEnd)[] = []
    const following = (async () => {
      for await (const x of C.logs.tail(F.node.peerId, { ...ref, from: 0, follow: true })) got.push(x)
    })()
    await waitFor('the follow to run', () => got.length === 1)
    // as a farm node stops: its runs end (handed back), then libp2p stops
    await F.store.end(ref, { ok: false, reason: 'node shutting down' })
    await F.node.stop()
    await following
    const end = got.at(-1)
    assert.ok(end !== undefined && isLogEnd(end), 'the follower got the end frame')
    assert.deepEqual([end.ok, end.reason], [false, 'node shutting down'])
  })

  it('a slow reader holds the server back (no unbounded buffering); stopping a follow frees the server', async (t) => {
    const ref = { ...REF, attempt: 3 }
    const total = 10_000
    for (let i = 0; i < total; i++)
      A.store.append(ref, 'stdout', `${String(i).padStart(6, '0')} ${'x'.repeat(993)}`)
    await A.store.flush()
    const sentBefore = A.logs.stats.linesSent
    const slow = await raw(C, A, [encodeRequest({ ...ref, from: 0, follow: true })], { read: false })
    // nothing is read: the server may only send what yamux's window and its pipeline (a page) hold
    let last = -1
    let stable = 0
    await waitFor(
      'the server to stall',
      () => {
        const now = A.logs.stats.linesSent - sentBefore
        stable = now > 0 && now === last ? stable + 1 : 0
        last = now
        return stable >= 5
      },
      { stepMs: 50 },
    )
    t.diagnostic(
      `a reader that read nothing was sent ${last} of ${total} lines of 1000 B before the server stalled`,
    )
    assert.ok(last < total / 4, `the server sent ${last} of ${total} lines to a reader that read nothing`)
    const reading = slow.read()
    await waitFor('every line at the reader', () =>
      slow.answers.reduce((n, a) => n + (a.type === 'lines' ? a.lines.length : 0), 0) >= total
        ? true
        : undefined,
    )
    assert.equal(A.logs.stats.serving, 1, 'a follow of a running attempt stays open')
    slow.stream.abort(new Error('the reader leaves'))
    await reading.catch(() => {})
    await waitFor('A to notice the reader left', () => A.logs.stats.serving === 0)

    // a reader that stops iterating closes its stream, and A stops serving it (the attempt still runs)
    let seen = 0
    for await (const x of C.logs.tail(A.node.peerId, { ...ref, from: total - 2, follow: true })) {
      if (!isLogEnd(x)) seen++
      if (seen === 2) break
    }
    await waitFor('A to notice the follower stopped', () => A.logs.stats.serving === 0)
    // so does a reader whose signal aborts
    const controller = new AbortController()
    const got: LogLine[] = []
    const aborted = (async () => {
      for await (const x of C.logs.tail(
        A.node.peerId,
        { ...ref, from: total - 1, follow: true },
        controller,
      )) {
        if (!isLogEnd(x)) got.push(x)
      }
    })()
    await waitFor('the last line', () => got.length === 1)
    controller.abort()
    await assert.rejects(aborted)
    await waitFor('A to notice the abort', () => A.logs.stats.serving === 0)
    await A.store.end(ref, { ok: true })
    await waitFor('A to serve nobody', () => A.logs.stats.serving === 0)
  })
})
