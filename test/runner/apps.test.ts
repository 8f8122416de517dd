import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type AppDef, BUILTIN_APPS, checkAppDef, getApp, validateSettings } from '../../src/runner/apps.ts'

const throwsNamed = (fn: () => unknown, name: string, message?: RegExp) =>
  assert.throws(fn, (err: Error) => {
    assert.equal(err.name, name)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })

const demo: AppDef = {
  name: 'demo',
  description: 'settings of every type',
  enabledByDefault: false,
  detect: { command: 'true' },
  settings: {
    file: { type: 'string', pattern: '[a-z]+\\.blend', description: 'scene' },
    threads: { type: 'integer', default: 4, min: 1, max: 64, description: 'threads' },
    scale: { type: 'number', default: 1, min: 0.1, max: 10, description: 'scale' },
    denoise: { type: 'boolean', default: false, description: 'denoise' },
  },
  phases: [
    { name: 'render', argv: ['true', '{file}', '-t', '{threads}', '{scale}', '{denoise}', '{first}'] },
  ],
  usesFrames: true,
}

describe('apps', () => {
  it('ships echo and sleep on, command off, all well-formed', () => {
    assert.deepEqual(
      BUILTIN_APPS.map((a) => [a.name, a.enabledByDefault]),
      [
        ['echo', true],
        ['sleep', true],
        ['command', false],
      ],
    )
    for (const app of [...BUILTIN_APPS, demo]) checkAppDef(app)
  })

  it('getApp finds by name and names unknown apps', () => {
    assert.equal(getApp('sleep').name, 'sleep')
    throwsNamed(() => getApp('constructor'), 'UnknownAppError', /known: echo, sleep, command/)
  })

  it('checkAppDef refuses unusable definitions', () => {
    const broken: AppDef[] = [
      { ...demo, name: 'Demo App' },
      { ...demo, phases: [] },
      { ...demo, phases: [{ name: 'x', argv: ['true', '{nope}'] }] },
      { ...demo, phases: [{ name: 'x', argv: ['true', '{first'] }] },
      { ...demo, usesFrames: false },
      { ...demo, settings: { ...demo.settings, first: { type: 'integer', description: '' } } },
      {
        ...demo,
        settings: { ...demo.settings, threads: { type: 'integer', default: 0, min: 1, description: '' } },
      },
      { ...demo, settings: { ...demo.settings, file: { type: 'string', pattern: '(', description: '' } } },
      { ...demo, phases: [{ name: 'x', argv: ['{...file}'] }] },
    ]
    for (const app of broken) throwsNamed(() => checkAppDef(app), 'InvalidAppError')
  })
})

describe('validateSettings', () => {
  it('applies defaults and coerces CLI strings', () => {
    assert.deepEqual(
      validateSettings(demo, { file: 'shot.blend', threads: '8', scale: '2.5', denoise: 'true' }),
      {
        file: 'shot.blend',
        threads: 8,
        scale: 2.5,
        denoise: true,
      },
    )
    assert.deepEqual(validateSettings(demo, { file: 'a.blend' }), {
      file: 'a.blend',
      threads: 4,
      scale: 1,
      denoise: false,
    })
    assert.deepEqual(validateSettings(getApp('echo'), {}), { text: 'hello' })
  })

  it('is idempotent', () => {
    const once = validateSettings(demo, { file: 'a.blend', threads: '2', denoise: 'false' })
    assert.deepEqual(validateSettings(demo, once), once)
  })

  it('rejects bad values with a message naming the setting', () => {
    const cases: [Record<string, string | number | boolean>, RegExp][] = [
      [{ file: 'a.blend', colour: 'red' }, /unknown setting "colour".*file, threads/],
      [{}, /setting file .* is required/],
      [{ file: 'A.BLEND' }, /setting file .* must match/],
      [{ file: 'a.blend', threads: '0' }, /setting threads .* at least 1/],
      [{ file: 'a.blend', threads: 65 }, /setting threads .* at most 64/],
      [{ file: 'a.blend', threads: '2.5' }, /setting threads .* an integer/],
      [{ file: 'a.blend', threads: 'lots' }, /setting threads .* an integer/],
      [{ file: 'a.blend', scale: 'NaN' }, /setting scale .* a number/],
      [{ file: 'a.blend', denoise: 'yes' }, /setting denoise .* a boolean/],
      [{ file: 3 }, /setting file .* a string/],
    ]
    for (const [raw, message] of cases)
      throwsNamed(() => validateSettings(demo, raw), 'InvalidSettingsError', message)
  })

  it('checks the command app argv as a JSON array of strings', () => {
    const command = getApp('command')
    assert.deepEqual(validateSettings(command, { argv: '["ls","-l"]' }), { argv: '["ls","-l"]' })
    for (const argv of [
      'ls -l',
      '[]',
      '[""]',
      '["ls",3]',
      '{"a":1}',
      '["a\\u0000b"]',
      JSON.stringify(Array(65).fill('x')),
    ]) {
      throwsNamed(() => validateSettings(command, { argv }), 'InvalidSettingsError', /setting argv/)
    }
  })

  it('bounds string length', () => {
    throwsNamed(
      () => validateSettings(getApp('echo'), { text: 'x'.repeat(5000) }),
      'InvalidSettingsError',
      /4096/,
    )
  })
})
