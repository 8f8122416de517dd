// Tiles in the job spec: a stored spec without them reads as 1; more than 1 only for a single frame
// with chunk 1, where the task count is the tile count and every tile task renders that frame.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { parseJobSpec, taskFrames, taskTile } from '../../src/crdt/schema.ts'
import { spec } from './fixtures.ts'

const still = (extra: Record<string, unknown> = {}) =>
  spec('t1', 4, { frames: { start: 7, end: 7, step: 1 }, chunk: 1, tiles: 4, ...extra })

test('a spec stored before tiles reads as whole frames', () => {
  const r = parseJobSpec(spec('j1'))
  assert.ok(r.ok)
  assert.equal(r.value.tiles, 1)
  assert.equal(taskTile(r.value, 3), null)
  assert.deepEqual(taskFrames(r.value, 3), [7, 8])
})

test('a still in 4 tiles: 4 tasks of frame 7, tiles 0..3, replicated as they are', () => {
  const r = parseJobSpec(still())
  assert.ok(r.ok, r.ok ? '' : r.error)
  assert.equal(r.value.tiles, 4)
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => [taskFrames(r.value, i), taskTile(r.value, i)]),
    [
      [[7, 7], 0],
      [[7, 7], 1],
      [[7, 7], 2],
      [[7, 7], 3],
    ],
  )
  const a = new Y.Doc()
  const b = new Y.Doc()
  new FarmDoc(a, { peer: 'pA' }).addJob(still())
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
  const fb = new FarmDoc(b, { peer: 'pB' })
  assert.equal(fb.read('t1')?.spec.tiles, 4)
  assert.equal(fb.view('t1')?.tasks.length, 4)
})

test('tiles only cut one frame with chunk 1, and the task count must be frames x tiles', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ tiles: 0 }, /tiles must be/],
    [{ tiles: 257, taskCount: 257 }, /tiles must be/],
    [{ tiles: 2.5 }, /tiles must be/],
    [{ tiles: '4' }, /tiles must be/],
    [{ frames: { start: 7, end: 8, step: 1 }, taskCount: 8 }, /one frame/],
    [{ chunk: 2 }, /one frame with chunk 1/],
    [{ frames: null }, /one frame/],
    [{ taskCount: 1 }, /taskCount does not match/],
    [{ taskCount: 5 }, /taskCount does not match/],
  ]
  for (const [extra, message] of cases) {
    const r = parseJobSpec(still(extra))
    assert.equal(r.ok, false, JSON.stringify(extra))
    if (!r.ok) assert.match(r.error, message, JSON.stringify(extra))
  }
  assert.equal(parseJobSpec(spec('j1', 4, { tiles: 1 })).ok, true)
})
