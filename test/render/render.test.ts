// End to end with the real Debian Blender and ffmpeg, three `openfarm join` processes on loopback,
// each with its own data directory (no shared storage): a scene with an external texture and a
// linked library is submitted from one peer whose project folder is then MOVED away; every frame
// renders elsewhere too, comes home verified, equals a direct render pixel for pixel, and an mp4 of
// the 12 frames is assembled by a dependent ffmpeg job. Logs and fetch work from a third peer; a
// worker killed mid-render and a submitter killed mid-job lose nothing; a corrupt .blend fails clearly.

import assert from 'node:assert/strict'
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FarmKey } from '../../src/node/farmkey.ts'
import { blenderMissing, makeTestScene, type TestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir, waitFor } from '../helpers.ts'
import {
  cli,
  directRender,
  type FarmProc,
  type JobJson,
  kill9,
  pixels,
  pyCacheBuilt,
  restartNode,
  startNode,
  videoFrames,
} from './farm.ts'

const missing = await blenderMissing()
if (missing !== null) console.error(`\n*** ${missing} ***\n`)

const pngs = async (dir: string) =>
  (await readdir(dir).catch(() => [] as string[])).filter((n) => /^frame_\d{4}\.png$/.test(n)).sort()

describe('rendering a scene on three peers', { skip: missing ?? false, timeout: 600_000 }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  const nodes: FarmProc[] = []
  let scene: TestScene
  let boot: string
  const ref = new Map<string, string>()

  const job = (id: string, via = 0) => nodes[via]!.client.get<JobJson>(`/v1/jobs/${id}`)
  const submit = async (from: number, ...args: string[]) => {
    const r = await cli(nodes[from]!.data, 'submit', 'blender', ...args, '--json')
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout) as { id: string }[]
  }

  before(async () => {
    dir = await tempDir('render')
    scene = await makeTestScene(await mkdirp(join(dir.path, 'project')))
    // the reference, with the project folder in place
    await directRender(scene.blend, join(dir.path, 'ref'), 1, 12)
    for (const f of await pngs(join(dir.path, 'ref'))) ref.set(f, await pixels(join(dir.path, 'ref', f)))
    assert.equal(ref.size, 12)
    nodes.push(await startNode(dir.path, 'n0', key, null))
    boot = (await nodes[0]!.client.get<{ addresses: string[] }>('/v1/info')).addresses[0]!
    for (const n of ['n1', 'n2']) nodes.push(await startNode(dir.path, n, key, boot))
    await waitFor('three hosts offering blender everywhere', async () => {
      const lists = await Promise.all(
        nodes.map((n) => n.client.get<{ liveness: string; apps: { name: string }[] }[]>('/v1/hosts')),
      )
      return lists.every(
        (l) =>
          l.filter((h) => h.liveness === 'alive' && h.apps.some((a) => a.name === 'blender')).length === 3,
      )
    })
    // and each built Blender's bytecode cache after its self-test: the renders below start with it,
    // and their frames are compared with the plain `blender -b` reference
    await waitFor('each node with its Blender bytecode cache', async () =>
      (await Promise.all(nodes.map((n) => pyCacheBuilt(n.data)))).every(Boolean),
    )
  })

  after(async () => {
    for (const n of nodes) kill9(n)
    await dir.remove()
  })

  it('renders on the farm after the scene folder moved away; frames come home equal to a direct render', async () => {
    const out = join(dir.path, 'render')
    const [render, video] = await submit(
      2,
      scene.blend,
      '--frames',
      '1-12',
      '--chunk',
      '4',
      '--out',
      out,
      '--video',
    )
    await rename(join(dir.path, 'project'), join(dir.path, 'project-moved-away'))
    try {
      await renderedAfterMove(render!.id, video!.id, out)
    } finally {
      await rename(join(dir.path, 'project-moved-away'), join(dir.path, 'project'))
    }
  })

  async function renderedAfterMove(renderId: string, videoId: string, out: string): Promise<void> {
    const render = { id: renderId }
    const video = { id: videoId }
    const v = await job(video!.id)
    assert.deepEqual(v.spec.dependsOn, [render!.id], 'the encode job is visibly a dependent job')
    assert.deepEqual(v.spec.inputsFrom, [render!.id])
    const r = await job(render!.id)
    assert.deepEqual(
      r.spec.inputs.map((i) => i.path),
      ['lib/lib.blend', 'shot/main.blend', 'textures/wood.png'],
    )
    await waitFor('render and video DONE', async () => (await job(video!.id, 1)).state === 'DONE', {
      timeoutMs: 240_000,
    })
    const done = await job(render!.id, 1)
    assert.ok(new Set(done.tasks.map((t) => t.owner)).size >= 2, 'the tasks ran on more than one host')
    await waitFor(
      '12 frames and the mp4 home',
      async () => (await pngs(out)).length === 12 && (await readdir(out)).includes('main.mp4'),
    )
    for (const f of await pngs(out)) assert.equal(await pixels(join(out, f)), ref.get(f), `${f} pixels`)
    assert.equal(await videoFrames(join(out, 'main.mp4')), 12)

    // logs from a peer that neither ran the task nor submitted it, after the task ended
    const t = done.tasks.find((x) => x.owner !== nodes[2]!.peerId)!
    const reader = nodes.find((n) => n.peerId !== t.owner && n !== nodes[2])!
    const logs = await cli(reader.data, 'logs', `${render!.id}/${t.index}`, '--follow')
    assert.equal(logs.code, 0, logs.stderr)
    assert.match(logs.stdout, /Read blend: .*in\/shot\/main\.blend/)
    assert.equal(logs.stdout.match(/^Saved: /gm)?.length, 4, `${logs.stderr}\n${logs.stdout.slice(-3000)}`)
    assert.match(logs.stderr, /attempt 0 on .*: DONE/)

    // any peer can pull the outputs
    const fetched = join(dir.path, 'fetched')
    const f = await cli(nodes[0]!.data, 'fetch', render!.id, '--out', fetched)
    assert.equal(f.code, 0, f.stderr)
    assert.deepEqual(await pngs(fetched), await pngs(out))
    // a file of other bytes where a frame goes is kept, and said, with exit 1; --overwrite replaces it
    const first = join(fetched, (await pngs(fetched))[0]!)
    await writeFile(first, 'not a frame')
    const kept = await cli(nodes[0]!.data, 'fetch', render!.id, '--out', fetched)
    assert.equal(kept.code, 1, kept.stderr)
    assert.match(
      kept.stderr,
      /1 output\(s\) not written: other files are there \(--overwrite replaces them\)/,
    )
    assert.equal(await readFile(first, 'utf8'), 'not a frame')
    const replaced = await cli(nodes[0]!.data, 'fetch', render!.id, '--out', fetched, '--overwrite')
    assert.equal(replaced.code, 0, replaced.stderr)
    assert.equal(await pixels(first), ref.get(basename(first)))
  }

  it('a corrupt .blend is refused at submit, and a job that has one fails for good, not forever', async () => {
    const bad = join(dir.path, 'project', 'shot', 'broken.blend')
    await writeFile(bad, 'BLENDER-v304 this is not a blend file at all')
    const r = await cli(nodes[1]!.data, 'submit', 'blender', bad)
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^openfarm: .*broken\.blend.*/m)
    assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace')
    // a client that skips the check: the workers fail it with Blender's reason, max-retries times
    const sub = await nodes[1]!.client.post<{ id: string }>('/v1/jobs', {
      app: 'blender',
      frames: '1-2',
      chunk: 2,
      maxRetries: 2,
      settings: { scene: 'broken.blend' },
      files: [{ source: bad, path: 'broken.blend' }],
    })
    await waitFor('the job FAILs', async () => (await job(sub.id)).state === 'FAIL', { timeoutMs: 120_000 })
    const failed = (await job(sub.id)).tasks[0]!
    assert.equal(failed.failures, 2, 'two attempts, then it stops')
    assert.match(failed.lastError ?? '', /blend|Blender/i)
  })

  it('a worker killed mid-render loses only its chunk; a submitter killed mid-job collects what it missed', async () => {
    const out = join(dir.path, 'render-kill')
    const [render] = await submit(2, scene.blend, '--frames', '1-12', '--chunk', '2', '--out', out)
    // the victim: a host other than the submitter, once it renders
    const running = await waitFor(
      'a task running on n0 or n1',
      async () =>
        (await job(render!.id)).tasks.find(
          (t) => t.state === 'RUN' && t.owner !== null && t.owner !== nodes[2]!.peerId,
        ),
      { timeoutMs: 120_000 },
    )
    const victim = nodes.find((n) => n.peerId === running.owner)!
    const survivor = nodes.find((n) => n !== victim && n !== nodes[2])!
    kill9(victim)
    kill9(nodes[2]!) // the laptop goes to sleep too
    await waitFor(
      'the job DONE without its submitter',
      async () => (await survivor.client.get<JobJson>(`/v1/jobs/${render!.id}`)).state === 'DONE',
      { timeoutMs: 240_000 },
    )
    const after = await survivor.client.get<JobJson>(`/v1/jobs/${render!.id}`)
    assert.ok(after.tasks[running.index]!.attempt >= 1, 'the killed chunk ran again')
    await restartNode(
      nodes[2]!,
      key,
      (await survivor.client.get<{ addresses: string[] }>('/v1/info')).addresses[0]!,
    )
    await waitFor('all 12 frames home after the restart', async () => (await pngs(out)).length === 12, {
      timeoutMs: 120_000,
    })
    for (const f of await pngs(out)) assert.equal(await pixels(join(out, f)), ref.get(f), `${f} pixels`)
  })
})

async function mkdirp(d: string): Promise<string> {
  await mkdir(d, { recursive: true })
  return d
}
