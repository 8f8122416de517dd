// The log store on a real level database in a temp directory: order, restart, live follow, the
// per-attempt cap, the pending bound, pruning, and bad input.

import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { type LogLine, LogStore, type LogStoreOptions } from '../../src/node/logstore.ts'
import { tempDir, waitFor } from '../helpers.ts'

const dirs: Array<{ remove: () => Promise<void> }> = []
const stores: LogStore[] = []
after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  await Promise.allSettled(dirs.map((d) => d.remove()))
})

async function open(opts: LogStoreOptions = {}, path?: string): Promise<{ store: LogStore; path: string }> {
  let dir = path
  if (dir === undefined) {
    const t = await tempDir('logstore')
    dirs.push(t)
    dir = t.path
  }
  const store = await LogStore.open(dir, opts)
  stores.push(store)
  return { store, path: dir }
}

const A = { job: 'job-1', task: 3, attempt: 1 }
const texts = (lines: readonly LogLine[]) => lines.map((l) => l.line)

describe('LogStore', () => {
  it('returns one attempt’s lines in order, by pages, apart from every other attempt', async () => {
    const { store } = await open()
    const other = [
      { ...A, attempt: 2 },
      { ...A, task: 4 },
      { ...A, job: 'job-1x' },
      { ...A, job: 'job' },
    ]
    for (let i = 0; i < 30; i++) {
      store.append(A, i % 2 === 0 ? 'stdout' : 'stderr', `line ${i}`)
      for (const o of other) store.append(o, 'stdout', `other ${i}`)
    }
    const all = await store.read(A)
    assert.deepEqual(
      texts(all.lines),
      Array.from({ length: 30 }, (_, i) => `line ${i}`),
    )
    assert.deepEqual(
      all.lines.map((l) => l.seq),
      Array.from({ length: 30 }, (_, i) => i),
    )
    assert.equal(all.lines[1]?.stream, 'stderr')
    assert.equal(all.ended, false)
    const page = await store.read(A, { from: 10, limit: 7 })
    assert.deepEqual(
      page.lines.map((l) => l.seq),
      [10, 11, 12, 13, 14, 15, 16],
    )
    assert.equal(page.next, 17)
    assert.deepEqual(await store.attempts('job-1', 3), [1, 2])
    assert.deepEqual(await store.attempts('job-1', 9), [])
    const status = await store.status(A)
    assert.equal(status?.lines, 30)
    assert.equal(status?.end, undefined)
  })

  it('keeps every line and end across a restart; an attempt left running is ended as interrupted', async () => {
    const first = await open()
    for (let i = 0; i < 5; i++) first.store.append(A, 'stdout', `kept ${i}`)
    first.store.append({ ...A, attempt: 2 }, 'stdout', 'running when the node stopped')
    await first.store.end(A, { ok: true })
    await first.store.close()
    const again = await open({}, first.path)
    const r = await again.store.read(A)
    assert.deepEqual(texts(r.lines), ['kept 0', 'kept 1', 'kept 2', 'kept 3', 'kept 4'])
    assert.equal(r.ended, true)
    assert.equal(r.end?.ok, true)
    const orphan = await again.store.read({ ...A, attempt: 2 })
    assert.equal(orphan.ended, true)
    assert.equal(orphan.end?.ok, false)
    assert.match(orphan.end?.reason ?? '', /interrupted/)
    again.store.append(A, 'stdout', 'after the end')
    assert.equal((await again.store.read(A)).lines.length, 5, 'an ended attempt takes no more lines')
  })

  it('follow yields the lines there are, then new ones within ~100 ms, and returns on end()', async (t) => {
    const { store } = await open()
    store.append(A, 'stdout', 'before 0')
    store.append(A, 'stdout', 'before 1')
    const got: Array<{ line: string; at: number }> = []
    const following = (async () => {
      for await (const l of store.follow(A)) got.push({ line: l.line, at: performance.now() })
    })()
    await waitFor('the existing lines', () => got.length === 2)
    const delays: number[] = []
    for (let i = 0; i < 5; i++) {
      const sent = performance.now()
      store.append(A, 'stderr', `live ${i}`)
      await waitFor(`live ${i}`, () => got.length === 3 + i, { stepMs: 2 })
      delays.push((got.at(-1)?.at ?? 0) - sent)
    }
    await store.end(A, { ok: false, reason: 'exit code 1' })
    await following
    assert.deepEqual(
      got.map((g) => g.line),
      ['before 0', 'before 1', 'live 0', 'live 1', 'live 2', 'live 3', 'live 4'],
    )
    t.diagnostic(`append -> follower: ${delays.map((d) => d.toFixed(0)).join(', ')} ms`)
    assert.ok(Math.max(...delays) < 300, `a live line took ${Math.max(...delays).toFixed(0)} ms`)
    const r = await store.read(A, { from: 7 })
    assert.deepEqual(r.lines, [])
    assert.deepEqual({ ok: r.end?.ok, reason: r.end?.reason }, { ok: false, reason: 'exit code 1' })
  })

  it('follow returns when its signal aborts; a started attempt without lines can be followed', async () => {
    const { store } = await open()
    store.start(A)
    const controller = new AbortController()
    const got: string[] = []
    const following = (async () => {
      for await (const l of store.follow(A, { signal: controller.signal })) got.push(l.line)
    })()
    store.append(A, 'stdout', 'one')
    await waitFor('the line', () => got.length === 1)
    controller.abort()
    await following
    assert.deepEqual(got, ['one'])
  })

  it('past the cap keeps the first and last lines; a reader gets a marker counting what it missed', async () => {
    const { store } = await open({ maxLinesPerAttempt: 10 })
    for (let i = 0; i < 25; i++) store.append(A, 'stdout', `l${i}`)
    await store.end(A, { ok: true })
    const r = await store.read(A)
    assert.deepEqual(texts(r.lines.slice(0, 5)), ['l0', 'l1', 'l2', 'l3', 'l4'])
    assert.match(r.lines[5]?.line ?? '', /15 lines dropped/)
    assert.equal(r.lines[5]?.seq, 19)
    assert.deepEqual(texts(r.lines.slice(6)), ['l20', 'l21', 'l22', 'l23', 'l24'])
    const later = await store.read(A, { from: 12 })
    assert.match(later.lines[0]?.line ?? '', /8 lines dropped/)
    assert.equal(later.lines.length, 6)
    const status = await store.status(A)
    assert.equal(status?.dropped, 15)
    assert.equal(status?.lines, 25)
    const whole = { ...A, attempt: 2 }
    for (let i = 0; i < 10; i++) store.append(whole, 'stdout', `w${i}`)
    assert.equal((await store.read(whole)).lines.length, 10, 'at the cap nothing is dropped')
  })

  it('cuts overlong lines, and counts lines it could not queue in a marker', async () => {
    const { store } = await open({ maxLineChars: 100, maxPendingBytes: 132 })
    store.append(A, 'stdout', 'x'.repeat(250))
    store.append(A, 'stdout', 'fits')
    for (let i = 0; i < 7; i++) store.append(A, 'stdout', `lost ${i}`)
    await store.end(A, { ok: true })
    const r = await store.read(A)
    assert.equal(r.lines[0]?.line, `${'x'.repeat(100)} [... 150 more characters cut]`)
    assert.equal(r.lines[1]?.line, 'fits')
    assert.match(r.lines[2]?.line ?? '', /7 lines lost/)
    assert.equal(r.lines.length, 3)
  })

  it('prune drops finished attempts by age, then the oldest finished ones by size, never a running one', async () => {
    let now = 1_000_000
    const { store } = await open({ now: () => now })
    const refs = [1, 2, 3].map((attempt) => ({ ...A, attempt }))
    for (const ref of refs) {
      for (let i = 0; i < 20; i++) store.append(ref, 'stdout', `${ref.attempt}:${i} ${'y'.repeat(50)}`)
      await store.end(ref, { ok: true })
      now += 60_000
    }
    const running = { ...A, attempt: 4 }
    for (let i = 0; i < 20; i++) store.append(running, 'stdout', 'z'.repeat(50))
    const byAge = await store.prune({ maxAgeMs: 150_000 })
    assert.equal(byAge.attempts, 1)
    assert.deepEqual(await store.attempts(A.job, A.task), [2, 3, 4])
    const size = (await store.status(running))?.bytes ?? 0
    assert.ok(size > 20 * 50)
    const bySize = await store.prune({ maxBytes: size + 10 })
    assert.equal(bySize.attempts, 2)
    assert.deepEqual(await store.attempts(A.job, A.task), [4])
    assert.equal((await store.prune({ maxBytes: 0 })).attempts, 0, 'a running attempt stays')
    await assert.rejects(store.read(refs[0]!), { name: 'UnknownAttemptError' })
  })

  it('closing ends a waiting follower with LogStoreClosedError; later writes are refused, not thrown', async () => {
    const { store } = await open()
    store.append(A, 'stdout', 'one')
    const got: string[] = []
    const following = (async () => {
      for await (const l of store.follow(A)) got.push(l.line)
    })()
    await waitFor('the line', () => got.length === 1)
    const ended = assert.rejects(following, { name: 'LogStoreClosedError' })
    await store.close()
    await ended
    store.append(A, 'stdout', 'after close') // dropped with a debug line: the runner must not crash
    await assert.rejects(store.end(A, { ok: true }), { name: 'LogStoreClosedError' })
    await assert.rejects(store.read(A), { name: 'LogStoreClosedError' })
  })

  it('refuses bad input with named errors', async () => {
    const { store } = await open()
    assert.throws(() => store.append({ ...A, job: '../etc' }, 'stdout', 'x'), {
      name: 'InvalidLogRequestError',
    })
    assert.throws(() => store.append({ ...A, task: -1 }, 'stdout', 'x'), { name: 'InvalidLogRequestError' })
    assert.throws(() => store.start({ ...A, attempt: 1.5 }), { name: 'InvalidLogRequestError' })
    await assert.rejects(store.read(A), { name: 'UnknownAttemptError' })
    store.append(A, 'stdout', 'x')
    await assert.rejects(store.read(A, { from: -1 }), { name: 'InvalidLogRequestError' })
    const file = await tempDir('logstore-file')
    dirs.push(file)
    await writeFile(join(file.path, 'plain'), 'not a directory')
    await assert.rejects(LogStore.open(join(file.path, 'plain', 'logs')), { name: 'LogStoreError' })
    await assert.rejects(LogStore.open(file.path, { maxLinesPerAttempt: 1 }), { name: 'LogStoreError' })
  })
})
