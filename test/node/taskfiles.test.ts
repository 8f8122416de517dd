// A task's inputs: placed INPUT_CONCURRENCY at once, remap.json in the order of the inputs whatever
// order the copies finish in, and the first failure stops the rest with a clear reason.

import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import { parseJobSpec } from '../../src/crdt/schema.ts'
import { type Blobs, INPUT_CONCURRENCY, InputsError, taskFiles } from '../../src/node/taskfiles.ts'
import { spec } from '../crdt/fixtures.ts'
import { tempDir } from '../helpers.ts'

const hashOf = (i: number) => i.toString(16).padStart(64, '0')
const N = 10

function setup(failAt?: number) {
  const farm = new FarmDoc(new Y.Doc(), { peer: 'pA' })
  const inputs = Array.from({ length: N }, (_, i) => ({
    path: `deps/f${i}.png`,
    hash: hashOf(i + 1),
    size: 1,
    orig: `/home/u/shot/deps/f${i}.png`,
  }))
  const s = spec('j1', 4, { inputs })
  farm.addJob(s)
  let running = 0
  let most = 0
  const started: number[] = []
  const blobs: Blobs = {
    fetch: async () => undefined,
    copyOut: async (hash, dest) => {
      const i = Number.parseInt(hash, 16) - 1
      started.push(i)
      running++
      most = Math.max(most, running)
      try {
        // later inputs finish first
        await new Promise((r) => setTimeout(r, (N - i) * 3))
        if (i === failAt) throw new Error('disk full')
        await writeFile(dest, String(i))
      } finally {
        running--
      }
    },
    add: async () => ({ hash: hashOf(0), size: 0 }),
    ref: async () => undefined,
  }
  const parsed = parseJobSpec(s)
  assert.ok(parsed.ok)
  return { files: taskFiles(farm, blobs), job: parsed.value, started, most: () => most }
}

describe("a task's inputs", () => {
  it('are placed a few at once, and remap.json lists them in their order', async () => {
    const dir = await tempDir('taskfiles')
    try {
      const t = setup()
      const indir = join(dir.path, 'in')
      assert.equal(await t.files.prepare(t.job, indir, new AbortController().signal), N)
      assert.equal(t.most(), INPUT_CONCURRENCY)
      for (let i = 0; i < N; i++)
        assert.equal(await readFile(join(indir, `deps/f${i}.png`), 'utf8'), String(i))
      const remap = JSON.parse(await readFile(join(dir.path, 'remap.json'), 'utf8'))
      assert.deepEqual(
        Object.entries(remap),
        Array.from({ length: N }, (_, i) => [`/home/u/shot/deps/f${i}.png`, join(indir, `deps/f${i}.png`)]),
      )
    } finally {
      await dir.remove()
    }
  })

  it('stop at the first failure, naming the input', async () => {
    const dir = await tempDir('taskfiles')
    try {
      const t = setup(2)
      await assert.rejects(
        t.files.prepare(t.job, join(dir.path, 'in'), new AbortController().signal),
        (err) => {
          assert.ok(err instanceof InputsError)
          assert.match(err.message, /input deps\/f2\.png: disk full/)
          return true
        },
      )
      // input 2 fails after 24 ms; by then 0..5 have started (each lane takes the next as one ends)
      await new Promise((r) => setTimeout(r, 100))
      assert.ok(t.started.length < N, `started ${t.started.length} of ${N} after the failure`)
    } finally {
      await dir.remove()
    }
  })
})
