import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { JobSpec } from '../../src/crdt/schema.ts'
import { type AppDef, getApp } from '../../src/runner/apps.ts'
import { quoteArgv, renderArgv, renderEnv } from '../../src/runner/argv.ts'
import { compileJob, type SubmitInput } from '../../src/runner/compile.ts'
import { runPhase } from '../../src/runner/execute.ts'

const ctx = { id: 'job-1', peer: 'peerA', now: 1 }
const render = (input: SubmitInput, task = 0, app: AppDef = getApp(input.app)) => {
  const spec = compileJob(input, { ...ctx, apps: [app] })
  return renderArgv(app, app.phases[0]!, spec, task)
}
const throwsNamed = (fn: () => unknown, name: string, message?: RegExp) =>
  assert.throws(fn, (err: Error) => {
    assert.equal(err.name, name)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })

const frameApp: AppDef = {
  name: 'frameapp',
  description: 'per-frame placeholders',
  enabledByDefault: false,
  detect: null,
  settings: { out: { type: 'string', default: 'out', description: 'output' } },
  phases: [
    { name: 'run', argv: ['tool', '-s', '{first}', '-e', '{last}', '-j', '{step}', '{{{out}}}-{frame}'] },
  ],
  usesFrames: true,
}

describe('renderArgv', () => {
  it('fills frames of each task and settings', () => {
    const input = { app: 'echo', frames: '1-10', chunk: 4, settings: { text: 'hi' } }
    assert.deepEqual(render(input, 0), ['echo', 'frames 1-4: hi'])
    assert.deepEqual(render(input, 2), ['echo', 'frames 9-10: hi'])
    assert.deepEqual(render({ app: 'sleep', frames: '1', settings: { seconds: '2.5' } }), ['sleep', '2.5'])
    assert.deepEqual(render({ app: 'frameapp', frames: '1-9x4' }, 1, frameApp), [
      'tool',
      '-s',
      '5',
      '-e',
      '5',
      '-j',
      '4',
      '{out}-5',
    ])
  })

  it('keeps a hostile value one element, never re-expanded', () => {
    const text = 'a b; rm -rf / $(id) `id` {first} \' " \n'
    const argv = render({ app: 'echo', frames: '3', settings: { text } })
    assert.equal(argv.length, 2)
    assert.equal(argv[1], `frames 3-3: ${text}`)
    const app: AppDef = { ...frameApp, name: 'whole' }
    const whole = render({ app: 'whole', frames: '1', settings: { out: 'a b; rm -rf /' } }, 0, app)
    assert.equal(whole.length, 8)
    assert.equal(whole[7], '{a b; rm -rf /}-1')
  })

  it('passes the value to the process as one argument, uninterpreted', async () => {
    const text = 'a b; touch /tmp/openfarm-injected $(id)'
    const argv = render({ app: 'echo', frames: '1', settings: { text } })
    const lines: string[] = []
    const r = await runPhase(['sh', '-c', 'printf "%s|" "$#" "$@"', 'sh', ...argv.slice(1)], {
      cwd: '/tmp',
      signal: new AbortController().signal,
      onLine: (_s, l) => lines.push(l),
    })
    assert.equal(r.ok, true)
    assert.deepEqual(lines, [`1|frames 1-1: ${text}|`])
  })

  it('splices the command app argv as given', () => {
    const argv = ['printf', '%s\\n', 'two words', '{first}', '; ls']
    assert.deepEqual(render({ app: 'command', settings: { argv: JSON.stringify(argv) } }), argv)
  })

  it('throws on unknown placeholders and unusable frame placeholders', () => {
    const spec = compileJob({ app: 'echo', frames: '1-4' }, ctx)
    const echo = getApp('echo')
    throwsNamed(
      () => renderArgv(echo, { name: 'x', argv: ['echo', '{nope}'] }, spec, 0),
      'InvalidTemplateError',
      /nope/,
    )
    throwsNamed(() => renderArgv(echo, { name: 'x', argv: ['echo', '{'] }, spec, 0), 'InvalidTemplateError')
    throwsNamed(
      () => renderArgv(echo, { name: 'x', argv: ['{text}', 'x'] }, { ...spec, args: { text: '' } }, 0),
      'InvalidTemplateError',
    )
    throwsNamed(() => renderArgv(echo, echo.phases[0]!, spec, 4), 'InvalidTemplateError', /task 4/)
    const chunked = compileJob({ app: 'echo', frames: '1-4', chunk: 2 }, ctx)
    throwsNamed(
      () => renderArgv(echo, { name: 'x', argv: ['echo', '{frame}'] }, chunked, 0),
      'InvalidTemplateError',
      /one frame/,
    )
    throwsNamed(
      () => compileJob({ app: 'frameapp', frames: '1-4', chunk: 2 }, { ...ctx, apps: [frameApp] }),
      'InvalidSubmitError',
    )
    const noFrames: JobSpec = { ...spec, frames: null }
    throwsNamed(() => renderArgv(echo, echo.phases[0]!, noFrames, 0), 'InvalidTemplateError', /no frames/)
  })

  it('re-validates args from the document', () => {
    const spec = compileJob({ app: 'sleep', frames: '1' }, ctx)
    const sleep = getApp('sleep')
    throwsNamed(
      () => renderArgv(sleep, sleep.phases[0]!, { ...spec, args: { seconds: 99999 } }, 0),
      'InvalidSettingsError',
    )
    throwsNamed(
      () => renderArgv(sleep, sleep.phases[0]!, { ...spec, args: { seconds: 1, extra: 'x' } }, 0),
      'InvalidSettingsError',
    )
    throwsNamed(
      () => renderArgv(getApp('echo'), sleep.phases[0]!, spec, 0),
      'InvalidTemplateError',
      /for app sleep/,
    )
  })

  const run = {
    indir: '/farm/task/in',
    outdir: '/farm/task/out',
    workdir: '/farm/task',
    threads: 2,
    device: 'CPU',
  } as const

  it('renders the Blender render phase with runner placeholders, in the order Blender needs', () => {
    const blender = getApp('blender')
    const spec = compileJob(
      { app: 'blender', frames: '1-12', chunk: 4, settings: { scene: 'shot/main.blend' } },
      ctx,
    )
    assert.deepEqual(renderArgv(blender, blender.phases[0]!, spec, 1, run), [
      'blender',
      '-b',
      '/farm/task/in/shot/main.blend',
      '-Y',
      '-o',
      '/farm/task/out/frame_####',
      '-F',
      'PNG',
      '-x',
      '1',
      '-t',
      '2',
      '--python-exit-code',
      '1',
      '--python',
      `${blender.dir}/../blender/prep.py`,
      '-s',
      '5',
      '-e',
      '8',
      '-j',
      '1',
      '-a',
    ])
    // prep.py's options come in the environment: nothing after '--', which Cycles would parse
    assert.deepEqual(renderEnv(blender, blender.phases[0]!, spec, 1, run), {
      OPENFARM_CYCLES_DEVICE: 'CPU',
      OPENFARM_DENOISE: 'keep',
      OPENFARM_REMAP: '/farm/task/remap.json',
      OPENFARM_BORDER: 'none',
    })
    const elsewhere = { ...run, scene: '/elsewhere/x.blend', appdir: '/opt/apps', device: 'OPTIX' } as const
    const given = renderArgv(blender, blender.phases[0]!, spec, 0, elsewhere)
    assert.equal(given[2], '/elsewhere/x.blend')
    assert.equal(given[15], '/opt/apps/../blender/prep.py')
    assert.equal(renderEnv(blender, blender.phases[0]!, spec, 0, elsewhere).OPENFARM_CYCLES_DEVICE, 'OPTIX')
    // an app without an environment adds none
    assert.deepEqual(
      renderEnv(
        getApp('echo'),
        getApp('echo').phases[0]!,
        compileJob({ app: 'echo', frames: '1', settings: { text: 'x' } }, ctx),
        0,
      ),
      {},
    )
  })

  it('renders the ffmpeg assemble phase over the whole range as one task', () => {
    const ffmpeg = getApp('ffmpeg')
    const spec = compileJob({ app: 'ffmpeg', frames: '1-12', chunk: 12, settings: { fps: '23.976' } }, ctx)
    const argv = renderArgv(ffmpeg, ffmpeg.phases[0]!, spec, 0, run)
    assert.equal(argv[0], 'ffmpeg')
    assert.deepEqual(argv.slice(argv.indexOf('-framerate'), argv.indexOf('-framerate') + 6), [
      '-framerate',
      '23.976',
      '-start_number',
      '1',
      '-i',
      '/farm/task/in/frame_%04d.png',
    ])
    assert.equal(argv.at(-1), '/farm/task/out/video.mp4')
    assert.equal(argv[argv.indexOf('-vf') + 1], 'pad=ceil(iw/2)*2:ceil(ih/2)*2')
  })

  it('refuses runner placeholders without a context, a bad context, and a scene outside the inputs', () => {
    const blender = getApp('blender')
    const spec = compileJob({ app: 'blender', frames: '1', settings: { scene: 'main.blend' } }, ctx)
    const phase = blender.phases[0]!
    throwsNamed(() => renderArgv(blender, phase, spec, 0), 'InvalidTemplateError', /needs a RunContext/)
    throwsNamed(
      () => renderEnv(blender, phase, spec, 0, { ...run, device: 'GPU' as 'CPU' }),
      'InvalidTemplateError',
      /device must be one of CPU, CUDA, OPTIX, HIP/,
    )
    throwsNamed(() => renderEnv(blender, phase, spec, 0), 'InvalidTemplateError', /needs a RunContext/)
    throwsNamed(
      () => renderArgv(blender, phase, spec, 0, { ...run, outdir: 'out' }),
      'InvalidTemplateError',
      /outdir must be an absolute path/,
    )
    throwsNamed(
      () => renderArgv(blender, phase, spec, 0, { ...run, threads: 0 }),
      'InvalidTemplateError',
      /threads/,
    )
    throwsNamed(
      () => renderArgv(blender, phase, { ...spec, args: { scene: '../../etc/x.blend' } }, 0, run),
      'InvalidSettingsError',
      /setting scene .* must match/,
    )
    for (const scene of ['/etc/x.blend', '.hidden.blend', 'a/../../x.blend', 'x.py']) {
      throwsNamed(
        () => compileJob({ app: 'blender', frames: '1', settings: { scene } }, ctx),
        'InvalidSettingsError',
        /scene/,
      )
    }
    const noDir = { ...blender, dir: undefined }
    throwsNamed(() => renderArgv(noDir, phase, spec, 0, run), 'InvalidTemplateError', /no config directory/)
  })

  it('quotes argv for logs', () => {
    assert.equal(quoteArgv(['echo', 'a b', "it's", '-x=1']), `echo 'a b' 'it'\\''s' -x=1`)
  })
})
