import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_SCHED } from '../../src/crdt/schedspec.ts'
import { LIMITS, parseJobSpec, taskFrames } from '../../src/crdt/schema.ts'
import { compileJob, formatFrames, parseFrames, type SubmitInput } from '../../src/runner/compile.ts'

const ctx = { id: 'job-1', peer: 'peerA', now: 1_700_000_000_000 }
const compile = (input: SubmitInput) => compileJob(input, ctx)
const throwsNamed = (fn: () => unknown, name: string, message?: RegExp) =>
  assert.throws(fn, (err: Error) => {
    assert.equal(err.name, name)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })

describe('parseFrames', () => {
  it('reads a range, a single frame and a stepped range', () => {
    assert.deepEqual(parseFrames('1-48'), { start: 1, end: 48, step: 1 })
    assert.deepEqual(parseFrames('7'), { start: 7, end: 7, step: 1 })
    assert.deepEqual(parseFrames(' 1-100x5 '), { start: 1, end: 96, step: 5 })
    assert.deepEqual(parseFrames('-10--2'), { start: -10, end: -2, step: 1 })
    assert.deepEqual(parseFrames('0-9x10'), { start: 0, end: 0, step: 10 })
  })

  it('rejects what is not a range, by name', () => {
    for (const bad of [
      '',
      'abc',
      '1-',
      '-',
      '1-48x',
      '1-48x0',
      '48-1',
      '1,2,3',
      '1-4-5',
      '1.5-3',
      '1 - 4',
      'x5',
    ]) {
      throwsNamed(() => parseFrames(bad), 'InvalidSubmitError')
    }
    throwsNamed(() => parseFrames('1-2000000'), 'InvalidSubmitError', /frames/)
    throwsNamed(() => parseFrames('48-1'), 'InvalidSubmitError', /before/)
  })

  it('formats back to the text it reads', () => {
    for (const text of ['1-48', '7', '1-96x5', '-3-3']) assert.equal(formatFrames(parseFrames(text)), text)
  })
})

describe('compileJob', () => {
  it('applies defaults and passes parseJobSpec', () => {
    const spec = compile({ app: 'echo', frames: '1-48' })
    assert.deepEqual(spec, {
      id: 'job-1',
      name: 'echo 1-48',
      group: null,
      app: 'echo',
      args: { text: 'hello' },
      frames: { start: 1, end: 48, step: 1 },
      chunk: 1,
      tiles: 1,
      taskCount: 48,
      priority: 0,
      maxRetries: 3,
      dependsOn: [],
      sched: DEFAULT_SCHED,
      inputs: [],
      inputsFrom: [],
      submittedBy: 'peerA',
      submittedAt: 1_700_000_000_000,
    })
    assert.equal(parseJobSpec(spec).ok, true)
  })

  it('compiles the scheduling part: policy, requirements, license, conditions, failure rules', () => {
    const spec = compile({
      app: 'echo',
      frames: '1-4',
      policy: 'cheap',
      slack: 0.5,
      requires: { tags: ['gpu-room'], memoryMb: 4096 },
      appVersion: '3.4',
      license: 'redshift',
      taskDeps: ['render1'],
      manual: true,
      failRatio: 0.25,
    })
    assert.deepEqual(spec.sched, {
      ...DEFAULT_SCHED,
      policy: { kind: 'cheap', slack: 0.5 },
      requires: { tags: ['gpu-room'], memoryMb: 4096, gpus: 0, appVersion: '3.4' },
      license: 'redshift',
      taskDeps: ['render1'],
      manual: true,
      failRatio: 0.25,
    })
    assert.equal(
      compile({ app: 'echo', frames: '1', policy: { kind: 'weights', time: 1, cost: 3 } }).sched.policy.kind,
      'weights',
    )
    assert.throws(() => compile({ app: 'echo', frames: '1', policy: 'slow' as never }), {
      name: 'InvalidSubmitError',
      message: /unknown policy/,
    })
    assert.throws(() => compile({ app: 'echo', frames: '1', requires: { tags: ['no spaces'] } }), {
      name: 'InvalidSubmitError',
      message: /tags/,
    })
    assert.throws(() => compile({ app: 'echo', frames: '1', failRatio: 0 }), { name: 'InvalidSubmitError' })
    // a version pin: a version, a range or a floor; a range that ends before it starts is refused
    for (const pin of ['3.4.1', '3.4-3.6', '3.6+'])
      assert.equal(compile({ app: 'echo', frames: '1', appVersion: pin }).sched.requires.appVersion, pin)
    for (const pin of ['3.6-3.4', '>=3.6', '3.x', '3.4 - 3.6'])
      assert.throws(() => compile({ app: 'echo', frames: '1', appVersion: pin }), {
        name: 'InvalidSubmitError',
        message: new RegExp(
          `a range from low to high \\(3\\.4-3\\.6\\) or a floor \\(3\\.6\\+\\), not "${pin}"`,
        ),
      })
  })

  it('counts tasks from frames and chunk', () => {
    const cases: [string, number, number][] = [
      ['1-48', 1, 48],
      ['1-48', 10, 5],
      ['1-48', 48, 1],
      ['1-48', 100, 1],
      ['1-100x5', 3, 7],
      ['7', 4, 1],
    ]
    for (const [frames, chunk, tasks] of cases) {
      const spec = compile({ app: 'echo', frames, chunk })
      assert.equal(spec.taskCount, tasks, `${frames} chunk ${chunk}`)
      assert.equal(parseJobSpec(spec).ok, true)
    }
    // the last task of a stepped range ends on a frame it renders
    const stepped = compile({ app: 'echo', frames: '1-100x5', chunk: 3 })
    assert.deepEqual(taskFrames(stepped, 6), [91, 96])
  })

  it("without a chunk, takes the app config's default: 4 frames for Blender, all of them for ffmpeg", () => {
    const scene = { scene: 'shot/main.blend' }
    assert.equal(compile({ app: 'blender', frames: '1-48', settings: scene }).taskCount, 12)
    assert.equal(compile({ app: 'blender', frames: '1-48', chunk: 1, settings: scene }).taskCount, 48)
    assert.equal(
      compile({ app: 'ffmpeg', frames: '1-48', settings: { fps: 24, output: 'a.mp4' } }).taskCount,
      1,
    )
    assert.equal(compile({ app: 'echo', frames: '1-48' }).taskCount, 48)
  })

  it('takes a frame range object and explicit fields', () => {
    const spec = compile({
      app: 'sleep',
      name: '  warm-up  ',
      frames: { start: 10, end: 20, step: 2 },
      chunk: 2,
      settings: { seconds: '0.5' },
      priority: -5,
      maxRetries: 1,
      dependsOn: ['job-0', 'job-0', 'other'],
      group: 'grp-1',
    })
    assert.equal(spec.name, 'warm-up')
    assert.deepEqual(spec.args, { seconds: 0.5 })
    assert.equal(spec.taskCount, 3)
    assert.deepEqual(spec.dependsOn, ['job-0', 'other'])
    assert.equal(spec.group, 'grp-1')
    assert.equal(parseJobSpec(spec).ok, true)
  })

  it('makes apps without frames one task with frames null', () => {
    const spec = compile({ app: 'command', settings: { argv: '["make","-j4"]' } })
    assert.equal(spec.frames, null)
    assert.equal(spec.taskCount, 1)
    assert.equal(spec.chunk, 1)
    assert.equal(spec.name, 'command')
    assert.equal(parseJobSpec(spec).ok, true)
    throwsNamed(
      () => compile({ app: 'command', frames: '1-4', settings: { argv: '["x"]' } }),
      'InvalidSubmitError',
    )
    throwsNamed(
      () => compile({ app: 'command', chunk: 2, settings: { argv: '["x"]' } }),
      'InvalidSubmitError',
    )
  })

  it('names the error of an unknown app or setting', () => {
    throwsNamed(() => compile({ app: 'maya', frames: '1' }), 'UnknownAppError', /maya.*echo/)
    throwsNamed(
      () => compile({ app: 'echo', frames: '1', settings: { colour: 'red' } }),
      'InvalidSettingsError',
      /colour/,
    )
    throwsNamed(
      () => compile({ app: 'sleep', frames: '1', settings: { seconds: 9999 } }),
      'InvalidSettingsError',
      /seconds.*3600/,
    )
    throwsNamed(() => compile({ app: 'command' }), 'InvalidSettingsError', /argv.*required/)
  })

  it('rejects bad fields with InvalidSubmitError', () => {
    const bad: SubmitInput[] = [
      { app: 'echo' },
      { app: 'echo', frames: 'soon' },
      { app: 'echo', frames: '1-10', chunk: 0 },
      { app: 'echo', frames: '1-10', chunk: 1.5 },
      { app: 'echo', frames: '1-10', priority: 2_000_000 },
      { app: 'echo', frames: '1-10', maxRetries: 0 },
      { app: 'echo', frames: '1-10', maxRetries: LIMITS.maxRetries + 1 },
      { app: 'echo', frames: '1-10', dependsOn: ['job-1'] },
      { app: 'echo', frames: '1-10', dependsOn: ['no spaces'] },
      { app: 'echo', frames: '1-10', group: 'a b' },
      { app: 'echo', frames: '1-10', name: '' },
      { app: 'echo', frames: '1-10', name: 'x'.repeat(201) },
      { app: 'echo', frames: '1-10', name: 'two\nlines' },
      { app: 'echo', frames: { start: 1, end: 10, step: 0 } },
      { app: 'echo', frames: '1-10', frame: 3 } as SubmitInput,
      // a mistyped constraint is refused, never read as "no constraint"
      { app: 'echo', frames: '1-10', requires: 'gpu' } as unknown as SubmitInput,
      { app: 'echo', frames: '1-10', requires: ['gpu'] } as unknown as SubmitInput,
      { app: 'echo', frames: '1-10', requires: { tags: 'gpu' } } as unknown as SubmitInput,
    ]
    for (const input of bad) throwsNamed(() => compile(input), 'InvalidSubmitError')
  })

  it('refuses more tasks than LIMITS.tasksPerJob, suggesting a larger chunk', () => {
    throwsNamed(
      () => compile({ app: 'echo', frames: '-1000000-1000000' }),
      'InvalidSubmitError',
      /larger chunk/,
    )
    const spec = compile({ app: 'echo', frames: '1-100000' })
    assert.equal(spec.taskCount, LIMITS.tasksPerJob)
    assert.equal(compile({ app: 'echo', frames: '-1000000-1000000', chunk: 100 }).taskCount, 20001)
  })

  it('checks its context', () => {
    throwsNamed(
      () => compileJob({ app: 'echo', frames: '1' }, { ...ctx, id: 'bad id' }),
      'InvalidSubmitError',
    )
    throwsNamed(() => compileJob({ app: 'echo', frames: '1' }, { ...ctx, now: -1 }), 'InvalidSubmitError')
    throwsNamed(() => compileJob({ app: 'echo', frames: '1' }, { ...ctx, peer: '' }), 'InvalidSubmitError')
  })
})
