import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { isSafeRelPath, parseInputs } from '../../src/crdt/files.ts'
import { parseJobSpec } from '../../src/crdt/schema.ts'
import { spec } from './fixtures.ts'

const H = 'a'.repeat(64)

test('safe relative paths stay inside their directory', () => {
  for (const ok of ['frame_0001.png', 'shot/main.blend', 'a/b/c.png', 'with space/x y.png', '.hidden']) {
    assert.equal(isSafeRelPath(ok), true, ok)
  }
  for (const bad of [
    '',
    '/etc/passwd',
    '../x',
    'a/../../x',
    'a/./b',
    'a//b',
    'a/',
    'C:/x',
    'c:x',
    'a\\..\\b',
    'a\u0000b',
    'a\nb',
    'x'.repeat(2000),
    42,
    null,
  ]) {
    assert.equal(isSafeRelPath(bad), false, JSON.stringify(bad))
  }
})

test('inputs are validated: paths, hashes, sizes, duplicates', () => {
  assert.deepEqual(parseInputs(undefined), { ok: true, value: [] })
  assert.equal(parseInputs([{ path: 'a.blend', hash: H, size: 3 }]).ok, true)
  assert.equal(parseInputs([{ path: 'a.blend', hash: H, size: 3, orig: '/home/u/a.blend' }]).ok, true)
  for (const bad of [
    [{ path: '../a.blend', hash: H, size: 3 }],
    [{ path: 'a.blend', hash: 'xyz', size: 3 }],
    [{ path: 'a.blend', hash: H, size: -1 }],
    [
      { path: 'a.blend', hash: H, size: 1 },
      { path: 'a.blend', hash: H, size: 1 },
    ],
    'a.blend',
  ]) {
    assert.equal(parseInputs(bad).ok, false, JSON.stringify(bad))
  }
  const withBad = parseJobSpec(spec('j1', 4, { inputs: [{ path: '/abs', hash: H, size: 1 }] }))
  assert.equal(withBad.ok, false)
  const self = parseJobSpec(spec('j1', 4, { inputsFrom: ['j1'] }))
  assert.equal(self.ok, false)
  const old = parseJobSpec(spec('j1'))
  assert.ok(old.ok)
  assert.deepEqual([old.value.inputs, old.value.inputsFrom], [[], []])
})

test('outputs: recorded, replicated, and a hostile record is ignored, not trusted', () => {
  const a = new Y.Doc()
  const b = new Y.Doc()
  const invalid: string[] = []
  const fa = new FarmDoc(a, { peer: 'pA' })
  const fb = new FarmDoc(b, { peer: 'pB', onInvalid: (_j, e) => invalid.push(e) })
  fa.addJob(spec('j1'))
  const seen: string[] = []
  fb.onOutputs((id) => seen.push(id))
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
  fa.recordOutput('j1', { path: 'frame_0001.png', hash: H, size: 10, frame: 1, task: 0, attempt: 0 })
  assert.throws(
    () => fa.recordOutput('j1', { path: '../evil', hash: H, size: 1, frame: 1, task: 0, attempt: 0 }),
    /not a safe relative path/,
  )
  // a hostile peer writes straight into the map
  const job = a.getMap('jobs').get('j1') as Y.Map<unknown>
  const outputs = job.get('outputs') as Y.Map<unknown>
  a.transact(() => {
    outputs.set('../../.bashrc', { h: H, s: 1, f: 1, t: 0, a: 0, p: 'pX' })
    outputs.set('/etc/cron.d/x', { h: H, s: 1, f: 1, t: 0, a: 0, p: 'pX' })
    outputs.set('ok.png', { h: 'nothex', s: 1, f: 1, t: 0, a: 0, p: 'pX' })
    outputs.set('late.png', { h: H, s: 1, f: 2, t: 99, a: 0, p: 'pX' })
  })
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
  const got = fb.outputs('j1')
  assert.deepEqual(
    got.map((o) => [o.path, o.frame, o.peer]),
    [['frame_0001.png', 1, 'pA']],
  )
  assert.equal(invalid.length, 3, invalid.join('; ')) // at most 3 reported per read
  assert.ok(seen.includes('j1'))
  // events still parse incrementally after output changes (the log was not re-read)
  fb.appendTaskEvents('j1', [{ kind: 'claim', task: 0, attempt: 0, bid: 1 }])
  assert.equal(fb.view('j1')?.tasks[0]?.state, 'CLAIM')
})

test('deferred output records share one update, and go at once with the task end', async () => {
  const a = new Y.Doc()
  const fa = new FarmDoc(a, { peer: 'pA' })
  fa.addJob(spec('j1'))
  fa.addJob(spec('j2'))
  const updates: Uint8Array[] = []
  a.on('update', (u: Uint8Array) => updates.push(u))
  const rec = (n: number) => ({
    path: `frame_000${n}.png`,
    hash: H,
    size: 10,
    frame: n,
    task: 0,
    attempt: 0,
  })
  // checked at once, deferred or not
  assert.throws(() => fa.recordOutput('j1', { ...rec(1), path: '../evil' }, { deferMs: 50 }), /safe relative/)
  fa.recordOutput('j1', rec(1), { deferMs: 10_000 })
  fa.recordOutput('j1', rec(2), { deferMs: 10_000 })
  assert.equal(updates.length, 0, 'nothing written yet')
  assert.deepEqual(fa.outputs('j1'), [])
  // the task's end takes them along: one update with both records and the event
  fa.appendTaskEvents('j1', [{ kind: 'done', task: 0, attempt: 0 }])
  assert.equal(updates.length, 1)
  const b = new Y.Doc()
  const fb = new FarmDoc(b, { peer: 'pB' })
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
  assert.deepEqual(
    fb.outputs('j1').map((o) => o.path),
    ['frame_0001.png', 'frame_0002.png'],
  )

  // without an event, the delay writes them: again one update
  fa.recordOutput('j2', rec(1), { deferMs: 30 })
  fa.recordOutput('j2', rec(2), { deferMs: 30 })
  assert.equal(updates.length, 1)
  await new Promise((r) => setTimeout(r, 80))
  assert.equal(updates.length, 2)
  assert.equal(fa.outputs('j2').length, 2)

  // flushOutputs writes what waits now; the default (no deferMs) writes at once
  fa.recordOutput('j2', rec(3), { deferMs: 10_000 })
  fa.flushOutputs()
  assert.equal(updates.length, 3)
  fa.flushOutputs()
  assert.equal(updates.length, 3, 'nothing waiting: no empty update')
  fa.recordOutput('j2', rec(4))
  assert.equal(updates.length, 4)
  assert.equal(fa.outputs('j2').length, 4)

  // deferOutputs: what waits may wait longer (for the update its process's end makes), never forever
  fa.recordOutput('j2', rec(5), { deferMs: 20 })
  fa.deferOutputs('j2', 100)
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(updates.length, 4, 'past its own deferMs, still waiting')
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(updates.length, 5)
  assert.equal(fa.outputs('j2').length, 5)
  fa.deferOutputs('j2', 10) // nothing waits: nothing to write later
  await new Promise((r) => setTimeout(r, 30))
  assert.equal(updates.length, 5)
})

test('outputs read between changes stay in step: added, replaced, spoiled, deleted, each reported once', () => {
  const a = new Y.Doc()
  const b = new Y.Doc()
  const invalid: string[] = []
  const fa = new FarmDoc(a, { peer: 'pA' })
  const fb = new FarmDoc(b, { peer: 'pB', onInvalid: (_j, e) => invalid.push(e) })
  a.on('update', (u: Uint8Array) => Y.applyUpdate(b, u))
  fa.addJob(spec('j1'))
  const rec = (n: number, size = 10) => ({ path: `f_${n}.png`, hash: H, size, frame: n, task: 0, attempt: 0 })
  const paths = () => fb.outputs('j1').map((o) => `${o.path}:${o.size}`)
  assert.deepEqual(paths(), [])
  fa.recordOutput('j1', rec(3))
  assert.deepEqual(paths(), ['f_3.png:10'])
  fa.recordOutput('j1', rec(1))
  fa.recordOutput('j1', rec(2))
  assert.deepEqual(paths(), ['f_1.png:10', 'f_2.png:10', 'f_3.png:10'], 'sorted by path')
  fa.recordOutput('j1', rec(2, 99)) // a retry's record replaces the earlier one
  assert.deepEqual(paths(), ['f_1.png:10', 'f_2.png:99', 'f_3.png:10'])
  const outputs = (a.getMap('jobs').get('j1') as Y.Map<unknown>).get('outputs') as Y.Map<unknown>
  a.transact(() => {
    outputs.set('f_1.png', { h: 'nothex', s: 1, f: 1, t: 0, a: 0, p: 'pX' }) // spoiled by a hostile peer
    outputs.delete('f_3.png')
  })
  assert.deepEqual(paths(), ['f_2.png:99'])
  assert.equal(invalid.length, 1, invalid.join('; '))
  fa.recordOutput('j1', rec(4))
  assert.deepEqual(paths(), ['f_2.png:99', 'f_4.png:10'])
  assert.equal(invalid.length, 1, 'a malformed record is reported once, not at every read')
  // the whole outputs map replaced: nothing of the old one stays
  a.transact(() => {
    const fresh = new Y.Map<unknown>()
    fresh.set('g.png', { h: H, s: 5, f: 1, t: 0, a: 0, p: 'pX' })
    ;(a.getMap('jobs').get('j1') as Y.Map<unknown>).set('outputs', fresh)
  })
  assert.deepEqual(paths(), ['g.png:5'])
  // a fresh reader of the same document sees the same
  const c = new Y.Doc()
  Y.applyUpdate(c, Y.encodeStateAsUpdate(a))
  assert.deepEqual(
    new FarmDoc(c, { peer: 'pC' }).outputs('j1').map((o) => `${o.path}:${o.size}`),
    paths(),
  )
})

test('a listener of outputs that reads a view sees the task events of the same update, and caches no stale view', () => {
  const a = new Y.Doc()
  const fa = new FarmDoc(a, { peer: 'pA' })
  fa.addJob(spec('j', 2))
  const seen: string[] = []
  fa.onOutputs((id) => seen.push(fa.view(id)?.tasks[1]?.state ?? '?'))
  fa.appendTaskEvents('j', [{ kind: 'claim', task: 1, attempt: 0, bid: 1 }])
  fa.appendTaskEvents('j', [{ kind: 'start', task: 1, attempt: 0 }])
  assert.equal(fa.view('j')?.tasks[1]?.state, 'RUN')
  // a task's end with its output records, in one update (the writer's side, then a peer's)
  const rec = { path: 'frame_0001.png', hash: H, size: 1, frame: 1, task: 1, attempt: 0 }
  fa.recordOutput('j', rec, { deferMs: 10_000 })
  fa.transact(() => {
    fa.flushOutputs()
    fa.appendTaskEvents('j', [{ kind: 'done', task: 1, attempt: 0, work: 1 }])
  })
  assert.deepEqual(seen, ['DONE'])
  assert.equal(fa.view('j')?.tasks[1]?.state, 'DONE')
  const b = new Y.Doc()
  const fb = new FarmDoc(b, { peer: 'pB' })
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
  const states: string[] = []
  fb.onOutputs((id) => states.push(fb.view(id)?.tasks[1]?.state ?? '?'))
  fb.view('j')
  fa.recordOutput('j', { ...rec, path: 'frame_0002.png' }, { deferMs: 10_000 })
  fa.transact(() => {
    fa.flushOutputs()
    fa.appendTaskEvents('j', [{ kind: 'requeue', task: 0, attempt: 0, reason: 'held' }])
  })
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  assert.deepEqual(states, ['DONE'])
  assert.equal(fb.view('j')?.tasks[0]?.attempt, 1, "the peer's view has the update's event")
})
