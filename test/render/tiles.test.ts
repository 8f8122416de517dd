// A still in tiles, end to end with the real Debian Blender and ffmpeg on three `openfarm join`
// processes (own data directories, no shared storage): `submit blender --frames 7 --tiles 4 --out DIR`
// from one peer renders the 4 tiles on whichever hosts win them, a dependent stitch job assembles
// them, and DIR/frame_0007.png decodes to the same pixels as a plain `blender -b scene -f 7`.

import assert from 'node:assert/strict'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FarmKey } from '../../src/node/farmkey.ts'
import { blenderMissing, makeTestScene, type TestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir, waitFor } from '../helpers.ts'
import { cli, directRender, type FarmProc, type JobJson, kill9, pixels, startNode } from './farm.ts'

const missing = await blenderMissing()
if (missing !== null) console.error(`\n*** ${missing} ***\n`)

interface Summary {
  id: string
  app: string
  group: string | null
  state: string
  tasks: number
}

describe('a still in tiles on three peers', { skip: missing ?? false, timeout: 180_000 }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  const nodes: FarmProc[] = []
  let scene: TestScene
  let reference: string

  before(async () => {
    dir = await tempDir('tiles-farm')
    const project = join(dir.path, 'project')
    await mkdir(project)
    scene = await makeTestScene(project)
    await directRender(scene.blend, join(dir.path, 'ref'), 7, 7)
    reference = await pixels(join(dir.path, 'ref', 'frame_0007.png'))
    nodes.push(await startNode(dir.path, 'n0', key, null))
    const boot = (await nodes[0]!.client.get<{ addresses: string[] }>('/v1/info')).addresses[0]!
    nodes.push(...(await Promise.all(['n1', 'n2'].map((n) => startNode(dir.path, n, key, boot)))))
    await waitFor('three hosts offering blender and stitch everywhere', async () => {
      const lists = await Promise.all(
        nodes.map((n) => n.client.get<{ liveness: string; apps: { name: string }[] }[]>('/v1/hosts')),
      )
      const both = (h: { apps: { name: string }[] }) =>
        ['blender', 'stitch'].every((a) => h.apps.some((x) => x.name === a))
      return lists.every((l) => l.filter((h) => h.liveness === 'alive' && both(h)).length === 3)
    })
  })

  after(async () => {
    for (const n of nodes) kill9(n)
    await dir?.remove()
  })

  it('renders 4 tiles of frame 7 on several hosts and stitches them into DIR, pixel-exact', async (t) => {
    const out = join(dir.path, 'still')
    const t0 = performance.now()
    const which = await cli(nodes[2]!.data, 'submit', 'blender', scene.blend, '--tiles', '4')
    assert.equal(which.code, 2, 'tiles of which frame? the scene has 1-12')
    assert.match(which.stderr, /--tiles cuts one frame .*--frames N .*1-12/)
    const r = await cli(
      nodes[2]!.data,
      ...['submit', 'blender', scene.blend, '--frames', '7', '--tiles', '4', '--out', out, '--json'],
    )
    assert.equal(r.code, 0, r.stderr)
    const [tiles, stitch] = JSON.parse(r.stdout) as Summary[]
    assert.deepEqual([tiles!.tasks, stitch!.tasks], [4, 1])

    const job = (id: string, via = 0) => nodes[via]!.client.get<JobJson>(`/v1/jobs/${id}`)
    const s = await job(stitch!.id)
    assert.deepEqual(s.spec.dependsOn, [tiles!.id], 'the stitch job visibly depends on the tile job')
    assert.deepEqual(s.spec.inputsFrom, [tiles!.id])

    await waitFor('tiles and stitch DONE', async () => (await job(stitch!.id, 1)).state === 'DONE', {
      timeoutMs: 120_000,
    })
    const done = await job(tiles!.id, 1)
    assert.equal(done.state, 'DONE')
    const owners = new Set(done.tasks.map((t) => t.owner))
    assert.ok(owners.size >= 2, `the tiles ran on ${owners.size} host(s), not at least 2`)

    const listing = async () => (await readdir(out).catch(() => [] as string[])).sort()
    await waitFor('the stitched frame home', async () => (await listing()).includes('frame_0007.png'))
    const home = (await listing()).filter((n) => !n.startsWith('.openfarm-'))
    assert.deepEqual(home, ['frame_0007.png'], 'only the frame comes home, not the tiles')
    assert.equal(await pixels(join(out, 'frame_0007.png')), reference, 'pixels of a direct render')
    t.diagnostic(
      `tiles on ${owners.size} hosts, frame home ${Math.round(performance.now() - t0)} ms after submit`,
    )

    // the tiles are the tile job's outputs, each under its own name
    const outputs = await nodes[0]!.client.get<{ outputs: number }>(`/v1/jobs/${tiles!.id}`)
    assert.equal(outputs.outputs, 4)

    // the job list and the status say how they belong together
    const list = await cli(nodes[0]!.data, 'jobs', '--json')
    const jobs = JSON.parse(list.stdout) as Summary[]
    const [tj, st] = [tiles!.id, stitch!.id].map((id) => jobs.find((j) => j.id === id)!)
    assert.equal(st!.app, 'stitch')
    assert.ok(tj!.group !== null && tj!.group === st!.group, 'one process group')
    const status = await cli(nodes[0]!.data, 'status', stitch!.id)
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, new RegExp(`depends on ${tiles!.id}`))
  })
})
