// `openfarm submit blender --video | --tiles N` posts two jobs, the render and the job that waits for
// it (the encode, the stitch). What would refuse the second is checked before the first is posted,
// so a refused submit leaves nothing on the farm; and if the farm still refuses the second, the
// error names the render job that stays and how to remove it.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { checkFollowUp, checkFollowUpName, FollowUpRefusedError, submitBlender } from '../../bin/blender.ts'
import { setJson } from '../../bin/read.ts'
import { LIMITS } from '../../src/crdt/schema.ts'
import { ApiClient } from '../../src/node/client.ts'
import { FarmKey } from '../../src/node/farmkey.ts'
import { type RunningNode, serve } from '../../src/node/serve.ts'
import { BUILTIN_APPS } from '../../src/runner/apps.ts'
import { blenderMissing, makeTestScene, type TestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'
import { cli } from './farm.ts'

const missing = await blenderMissing()

describe('the follow-up job checks (no Blender)', () => {
  it('take names up to the farm limit less the follow-up word', () => {
    checkFollowUpName('n'.repeat(LIMITS.nameChars - ' video'.length), 'video', true)
    checkFollowUpName('n'.repeat(LIMITS.nameChars - ' stitch'.length), 'stitch', true)
    assert.throws(
      () => checkFollowUpName('n'.repeat(LIMITS.nameChars - ' video'.length + 1), 'video', true),
      (e: Error) => e.name === 'UsageError' && /--name has 195 characters.*1 to 194/.test(e.message),
    )
    assert.throws(
      () => checkFollowUpName('n'.repeat(LIMITS.nameChars - ' stitch'.length + 1), 'stitch', false),
      (e: Error) =>
        e.name === 'UsageError' && /scene's file name/.test(e.message) && /1 to 193/.test(e.message),
    )
    assert.throws(() => checkFollowUpName('', 'video', true), /1 to 194/)
  })

  it('compile the follow-up as the node would, and refuse what the node would refuse', () => {
    const video = {
      app: 'ffmpeg',
      name: 'shot video',
      frames: '1-12',
      chunk: 12,
      settings: { fps: 24, output: 'shot.mp4' },
      inputsFrom: ['jrender'],
      out: '/tmp/x',
      overwrite: false,
    }
    checkFollowUp('video', video, BUILTIN_APPS)
    assert.throws(
      () => checkFollowUp('video', { ...video, settings: { fps: 5000, output: 'shot.mp4' } }, BUILTIN_APPS),
      (e: Error) =>
        e.name === 'UsageError' &&
        /the video job would be refused .*fps.*nothing was submitted/.test(e.message),
    )
  })
})

describe('submit blender with a follow-up job', { skip: missing ?? false, timeout: 300_000 }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let scene: TestScene
  let node: RunningNode
  let data: string
  let client: ApiClient

  before(async () => {
    dir = await tempDir('submit-blender')
    scene = await makeTestScene(dir.path)
    data = join(dir.path, 'a')
    node = await serve({
      dataDir: data,
      key: FarmKey.generate(),
      configFile: null,
      // nothing runs here: the jobs only have to be on the farm
      flags: {
        name: 'a',
        speed: '1',
        enableApps: [],
        disableApps: ['blender', 'ffmpeg', 'command', 'echo', 'sleep'],
      },
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
    })
    client = await ApiClient.connect(data)
  })
  after(async () => {
    await node?.stop()
    await dir?.remove()
  })

  const jobs = () => client.get<{ id: string; app: string }[]>('/v1/jobs')

  it('refuses a --name the video or stitch job cannot carry, and submits nothing', async () => {
    const video = await cli(data, 'submit', 'blender', scene.blend, '--video', '--name', 'n'.repeat(197))
    assert.equal(video.code, 2, video.stderr)
    assert.match(video.stderr, /the video job is named "NAME video", so the name must have 1 to 194/)
    const tiles = ['--tiles', '4', '--frames', '1', '--name', 'n'.repeat(194)]
    const stitch = await cli(data, 'submit', 'blender', scene.blend, ...tiles)
    assert.equal(stitch.code, 2, stitch.stderr)
    assert.match(stitch.stderr, /the stitch job is named "NAME stitch", so the name must have 1 to 193/)
    assert.deepEqual(await jobs(), [])
    // the longest name that fits goes through: both jobs are on the farm
    const ok = await cli(
      data,
      'submit',
      'blender',
      scene.blend,
      '--video',
      '--name',
      'n'.repeat(194),
      '--json',
    )
    assert.equal(ok.code, 0, ok.stderr)
    const [render, encode] = JSON.parse(ok.stdout) as { id: string; name: string }[]
    assert.equal(encode!.name, `${'n'.repeat(194)} video`)
    assert.deepEqual((await jobs()).map((j) => j.id).sort(), [render!.id, encode!.id].sort())
  })

  it('refuses a scene without a camera, and submits nothing', async () => {
    const before = (await jobs()).length
    const r = await cli(data, 'submit', 'blender', scene.depsBlend)
    assert.equal(r.code, 1, r.stderr)
    assert.match(
      r.stderr,
      /^openfarm: .*deps\.blend: the scene has no camera, so Blender cannot render it: set one/m,
    )
    assert.equal((await jobs()).length, before)
  })

  it('with --denoise require, asks for a Blender that can denoise, and refuses a scene that does not', async () => {
    const before = (await jobs()).length
    const off = await cli(data, 'submit', 'blender', scene.blend, '--denoise', 'require')
    assert.equal(off.code, 1, off.stderr)
    assert.match(
      off.stderr,
      /main\.blend: --denoise require, but the scene does not denoise \(Cycles' Denoise is off\)/,
    )
    assert.equal((await jobs()).length, before)
    const on = await cli(data, 'submit', 'blender', scene.denoiseBlend, '--denoise', 'require', '--json')
    assert.equal(on.code, 0, on.stderr)
    // Debian's Blender, which read the scene here, has no OpenImageDenoise
    assert.match(
      on.stderr,
      /^openfarm: warning: Blender 3\.4\.\d+ here is built without OpenImageDenoise: only hosts whose Blender has it \(tag blender:oidn in `openfarm hosts`\) render this job$/m,
    )
    const [job] = JSON.parse(on.stdout) as { id: string }[]
    const spec = await client.get<{ spec: { sched: { requires: { tags: string[] } } } }>(
      `/v1/jobs/${job!.id}`,
    )
    assert.deepEqual(spec.spec.sched.requires.tags, ['blender:oidn'])
    await client.post(`/v1/jobs/${job!.id}/remove`)
  })

  it('pins the Blender the user names, says so, and says when no host has it', async () => {
    const pinned = await cli(
      data,
      'submit',
      'blender',
      scene.blend,
      '--app-version',
      '9.9',
      '--frames',
      '0-20',
    )
    assert.equal(pinned.code, 0, pinned.stderr)
    assert.match(
      pinned.stderr,
      /^openfarm: warning: --frames 0-20 reaches outside the scene's frame range 1-12: those frames render too/m,
    )
    assert.match(pinned.stdout, /file\(s\), Blender 9\.9$/m)
    // this node runs no Blender at all
    assert.match(pinned.stdout, /^no host can run it now: no host runs blender$/m)
    const byRequires = await cli(data, 'submit', 'blender', scene.blend, '--requires', 'app=3.3', '--json')
    assert.equal(byRequires.code, 0, byRequires.stderr)
    const [job] = JSON.parse(byRequires.stdout) as { id: string; noHost: string }[]
    assert.equal(job!.noHost, 'no host runs blender')
    const spec = await client.get<{ spec: { sched: { requires: { appVersion: string } } } }>(
      `/v1/jobs/${job!.id}`,
    )
    assert.equal(
      spec.spec.sched.requires.appVersion,
      '3.3',
      '--requires app= is not replaced by the default pin',
    )
    // this test's two jobs go (the farm's other jobs are not this test's to remove)
    const first = /^submitted (\S+):/m.exec(pinned.stdout)![1]!
    for (const id of [first, job!.id]) await client.post(`/v1/jobs/${id}/remove`)
  })

  it('names the render job that stays, and how to remove it, when the farm refuses the follow-up', async () => {
    // the farm takes the render job and refuses the next one (as a node of another release might)
    const posted: { app: string }[] = []
    const refusing = {
      post: async (_path: string, body: { app: string; name: string }) => {
        posted.push(body)
        if (posted.length > 1) throw new Error('the farm said no')
        return { id: 'jabc123', name: body.name, tasks: 3, state: 'QUEUE' }
      },
    } as unknown as ApiClient
    await assert.rejects(
      submitBlender(refusing, scene.blend, { video: true, name: 'shot' }, Date.now()),
      (e: Error) =>
        e instanceof FollowUpRefusedError &&
        e.message.includes('submitted jabc123: shot, but the farm refused its video job: the farm said no') &&
        e.message.includes("'openfarm rm jabc123'") &&
        e.message.includes("'openfarm cancel jabc123'"),
    )
    assert.deepEqual(
      posted.map((p) => p.app),
      ['blender', 'ffmpeg'],
    )
    // with --json, stdout names the job that stays (a script can remove it), as on success
    posted.length = 0
    const printed: string[] = []
    const log = console.log
    console.log = (line: string) => printed.push(line)
    setJson(true)
    try {
      await assert.rejects(
        submitBlender(refusing, scene.blend, { video: true, name: 'shot' }, Date.now()),
        FollowUpRefusedError,
      )
    } finally {
      setJson(false)
      console.log = log
    }
    assert.deepEqual(
      (JSON.parse(printed.join('\n')) as { id: string }[]).map((j) => j.id),
      ['jabc123'],
    )
  })
})
