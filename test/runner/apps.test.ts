import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type AppDef,
  BUILTIN_APPS,
  BUILTIN_APPS_DIR,
  checkAppDef,
  getApp,
  loadApps,
  validateSettings,
} from '../../src/runner/apps.ts'
import { tempDir } from '../helpers.ts'

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
    copies: { type: 'integer', default: 4, min: 1, max: 64, description: 'copies' },
    scale: { type: 'number', default: 1, min: 0.1, max: 10, description: 'scale' },
    denoise: { type: 'boolean', default: false, description: 'denoise' },
  },
  phases: [{ name: 'render', argv: ['true', '{file}', '-t', '{copies}', '{scale}', '{denoise}', '{first}'] }],
  usesFrames: true,
}

describe('apps', () => {
  it('ships blender, ffmpeg, echo, sleep and stitch on, command off, all well-formed, from JSON files', () => {
    assert.deepEqual(
      BUILTIN_APPS.map((a) => [a.name, a.enabledByDefault]),
      [
        ['blender', true],
        ['command', false],
        ['echo', true],
        ['ffmpeg', true],
        ['sleep', true],
        ['stitch', true],
      ],
    )
    for (const app of [...BUILTIN_APPS, demo]) checkAppDef(app)
    for (const app of BUILTIN_APPS) assert.equal(app.dir, BUILTIN_APPS_DIR.replace(/\/$/, ''))
    assert.equal(getApp('blender').chunk, 4)
    assert.equal(getApp('ffmpeg').chunk, 'all')
    assert.equal(getApp('blender').outputs?.perFrame, true)
  })

  it('getApp finds by name and names unknown apps', () => {
    assert.equal(getApp('sleep').name, 'sleep')
    throwsNamed(
      () => getApp('constructor'),
      'UnknownAppError',
      /known: blender, command, echo, ffmpeg, sleep/,
    )
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
        settings: { ...demo.settings, copies: { type: 'integer', default: 0, min: 1, description: '' } },
      },
      { ...demo, settings: { ...demo.settings, file: { type: 'string', pattern: '(', description: '' } } },
      { ...demo, phases: [{ name: 'x', argv: ['{...file}'] }] },
      { ...demo, settings: { ...demo.settings, outdir: { type: 'string', description: '' } } },
      { ...demo, settings: { ...demo.settings, scene: { type: 'integer', description: '' } } },
      { ...demo, chunk: 0 },
      { ...demo, usesFrames: false, phases: [{ name: 'x', argv: ['true'] }], chunk: 'all' },
      { ...demo, progress: ['(?<fraem>\\d+)'] },
      { ...demo, progress: ['Sample (?<sample>\\d+)'] },
      { ...demo, progress: ['Time:(?<elapsed>\\S+)'] },
      { ...demo, progress: ['('] },
      { ...demo, progress: ['no groups'] },
      { ...demo, outputs: { pattern: 'Saved: (.*)', perFrame: true } },
      { ...demo, outputs: { perFrame: true } },
      { ...demo, selfTest: { kind: 'blender', timeoutMs: -1 } },
      // a phase's environment: names in capitals, none the runner sets, one value each, known placeholders
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { lower: 'x' } }] },
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { TMPDIR: '/tmp' } }] },
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { PYTHONPYCACHEPREFIX: '/x' } }] },
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { A: '{...file}' } }] },
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { A: '{nope}' } }] },
      { ...demo, phases: [{ name: 'x', argv: ['true'], env: { A: '{first' } }] },
    ]
    for (const app of broken) throwsNamed(() => checkAppDef(app), 'InvalidAppError')
  })

  it('allows runner placeholders in argv and a relative scene setting', () => {
    checkAppDef({
      ...demo,
      settings: {
        ...demo.settings,
        scene: { type: 'string', pattern: '[a-z]+\\.blend', description: 'main' },
      },
      phases: [
        {
          name: 'x',
          argv: ['r', '{scene}', '{indir}', '{outdir}/f', '{workdir}', '{threads}', '{device}', '{appdir}'],
        },
      ],
    })
  })
})

describe('loadApps', () => {
  let dir: { path: string; remove: () => Promise<void> }
  before(async () => {
    dir = await tempDir('apps')
  })
  after(() => dir.remove())

  const good = {
    name: 'mine',
    description: 'a host-owned app',
    enabledByDefault: false,
    detect: { command: 'true' },
    settings: { n: { type: 'integer', default: 1, min: 1, description: 'n' } },
    phases: [{ name: 'run', argv: ['true', '{n}', '{outdir}'] }],
    usesFrames: true,
    progress: ['^done (?<done>\\d+)$'],
  }

  async function loadOne(name: string, content: unknown): Promise<AppDef[]> {
    const sub = join(dir.path, name)
    await mkdir(sub)
    const text = typeof content === 'string' ? content : JSON.stringify(content)
    await writeFile(join(sub, `${name}.json`), text)
    return loadApps([sub])
  }

  it('adds a host owner directory to the built-ins, a later file replacing an app of the same name', async () => {
    const apps = await loadOne('extra', good)
    assert.deepEqual(
      apps.map((a) => a.name),
      ['blender', 'command', 'echo', 'ffmpeg', 'sleep', 'stitch', 'mine'],
    )
    assert.equal(getApp('mine', apps).dir, join(dir.path, 'extra'))
    const replaced = await loadOne('override', { ...good, name: 'echo', description: 'mine now' })
    assert.equal(getApp('echo', replaced).description, 'mine now')
  })

  it('names the file and the field of every problem', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['json', '{ "name": ', /json\.json: not valid JSON/],
      ['unknown', { ...good, colour: 'red' }, /unknown\.json: colour: unknown key/],
      ['missing', { ...good, phases: undefined }, /missing\.json: phases: is required/],
      ['type', { ...good, enabledByDefault: 'yes' }, /type\.json: enabledByDefault: must be true or false/],
      [
        'phasekey',
        { ...good, phases: [{ name: 'run', argvv: [] }] },
        /phasekey\.json: phases\[0\]\.argvv: unknown key/,
      ],
      [
        'argvtype',
        { ...good, phases: [{ name: 'run', argv: ['true', 3] }] },
        /argvtype\.json: phases\[0\]\.argv\[1\]: must be a string/,
      ],
      [
        'settingkey',
        { ...good, settings: { n: { type: 'integer', descr: '' } } },
        /settingkey\.json: settings\.n\.descr: unknown key/,
      ],
      [
        'placeholder',
        { ...good, phases: [{ name: 'run', argv: ['true', '{m}'] }] },
        /placeholder\.json: .*phases\[0\]\.argv: \{m\} is neither/,
      ],
      [
        'envplaceholder',
        { ...good, phases: [{ name: 'run', argv: ['true'], env: { OUT: '{m}' } }] },
        /envplaceholder\.json: .*phases\[0\]\.env\.OUT: \{m\} is neither/,
      ],
      [
        'envtype',
        { ...good, phases: [{ name: 'run', argv: ['true'], env: { OUT: 3 } }] },
        /envtype\.json: phases\[0\]\.env\.OUT: must be a string/,
      ],
      [
        'regex',
        { ...good, progress: ['(?<done>\\d+'] },
        /regex\.json: .*progress\[0\]: bad regular expression/,
      ],
      ['selftest', { ...good, selfTest: { kind: 'maya' } }, /selftest\.json: selfTest\.kind: must be/],
      ['chunk', { ...good, chunk: 'some' }, /chunk\.json: chunk: must be a number/],
      [
        'protosetting',
        `{"name":"p","description":"d","enabledByDefault":false,"detect":null,"usesFrames":false,"phases":[{"name":"r","argv":["true"]}],"settings":{"__proto__":{"type":"string","description":"x"}}}`,
        /protosetting\.json: settings\.__proto__: is not a valid setting name/,
      ],
    ]
    for (const [name, content, message] of cases) {
      await assert.rejects(loadOne(name, content), (err: Error) => {
        assert.equal(err.name, 'InvalidAppError', name)
        assert.match(err.message, message)
        return true
      })
    }
  })

  it('rejects a missing directory and an app defined twice in one directory', async () => {
    throwsNamed(
      () => loadApps([join(dir.path, 'nope')]),
      'InvalidAppError',
      /cannot read app config directory/,
    )
    const twice = join(dir.path, 'twice')
    await mkdir(twice)
    await writeFile(join(twice, 'a.json'), JSON.stringify(good))
    await writeFile(join(twice, 'b.json'), JSON.stringify(good))
    throwsNamed(() => loadApps([twice]), 'InvalidAppError', /b\.json: name: app mine is defined twice/)
  })
})

describe('validateSettings', () => {
  it('applies defaults and coerces CLI strings', () => {
    assert.deepEqual(
      validateSettings(demo, { file: 'shot.blend', copies: '8', scale: '2.5', denoise: 'true' }),
      {
        file: 'shot.blend',
        copies: 8,
        scale: 2.5,
        denoise: true,
      },
    )
    assert.deepEqual(validateSettings(demo, { file: 'a.blend' }), {
      file: 'a.blend',
      copies: 4,
      scale: 1,
      denoise: false,
    })
    assert.deepEqual(validateSettings(getApp('echo'), {}), { text: 'hello' })
  })

  it('is idempotent', () => {
    const once = validateSettings(demo, { file: 'a.blend', copies: '2', denoise: 'false' })
    assert.deepEqual(validateSettings(demo, once), once)
  })

  it('rejects bad values with a message naming the setting', () => {
    const cases: [Record<string, string | number | boolean>, RegExp][] = [
      [{ file: 'a.blend', colour: 'red' }, /unknown setting "colour".*file, copies/],
      [{}, /setting file .* is required/],
      [{ file: 'A.BLEND' }, /setting file .* must match/],
      [{ file: 'a.blend', copies: '0' }, /setting copies .* at least 1/],
      [{ file: 'a.blend', copies: 65 }, /setting copies .* at most 64/],
      [{ file: 'a.blend', copies: '2.5' }, /setting copies .* an integer/],
      [{ file: 'a.blend', copies: 'lots' }, /setting copies .* an integer/],
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
