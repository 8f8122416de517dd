// Loading and checking application configs: JSON files parsed field by field (unknown keys rejected,
// every problem named with the file and the field), then checked as a whole: setting definitions,
// placeholders every phase can resolve, progress and output patterns that compile.

import { readdirSync, readFileSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AppDef, AppDetect, OutputsDef, SelfTestDef } from './apps.ts'
import { InvalidAppError } from './errors.ts'
import { checkSetting, type SettingDef } from './settings.ts'
import {
  FRAME_PLACEHOLDERS,
  NAME_RE,
  parseElement,
  RUNNER_PLACEHOLDERS,
  RUNNER_SPLICES,
  type TemplateNames,
  templateNames,
} from './template.ts'

/**
 * Named groups a progress pattern may capture: the frame now rendering, samples and tiles of it,
 * frames done, and the app's own estimate of the frame (times elapsed and remaining, [HH:]MM:SS.cc).
 */
export const PROGRESS_GROUPS: readonly string[] = [
  'frame',
  'sample',
  'samples',
  'tile',
  'tiles',
  'done',
  'elapsed',
  'remaining',
]

/** Where the built-in app configs live. */
export const BUILTIN_APPS_DIR: string = fileURLToPath(new URL('./apps/', import.meta.url))

const MAX_CONFIG_BYTES = 64 * 1024
const MAX_ENV = 32
const ENV_NAME_RE = /^[A-Z_][A-Z0-9_]{0,63}$/
/** Variables the runner sets itself: a phase's environment cannot name them. */
const RUNNER_ENV: readonly string[] = ['TMPDIR', 'PYTHONPYCACHEPREFIX', 'OPENFARM_LAUNCH']

/**
 * The apps defined by the *.json files of the built-in directory, then of each of `dirs` (a later file
 * defining an existing name replaces it). Throws InvalidAppError naming the file and the field.
 */
export function loadApps(dirs: readonly string[] = []): AppDef[] {
  const apps = new Map<string, AppDef>()
  for (const dir of [BUILTIN_APPS_DIR, ...dirs]) {
    const here = new Set<string>()
    for (const file of configFiles(dir)) {
      const app = loadAppFile(file)
      if (here.has(app.name))
        throw new InvalidAppError(`${file}: name: app ${app.name} is defined twice in ${dir}`)
      here.add(app.name)
      apps.delete(app.name)
      apps.set(app.name, app)
    }
  }
  return [...apps.values()]
}

function configFiles(dir: string): string[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    throw new InvalidAppError(`cannot read app config directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  return names
    .filter((n) => n.endsWith('.json'))
    .sort()
    .map((n) => resolve(dir, n))
}

/** One app config file, parsed and checked; throws InvalidAppError '<file>: <field>: <problem>'. */
export function loadAppFile(file: string): AppDef {
  let text: string
  try {
    if (statSync(file).size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`)
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new InvalidAppError(`${file}: cannot read: ${(err as Error).message}`, { cause: err })
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new InvalidAppError(`${file}: not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  const app = parseAppDef(raw, file)
  const located: AppDef = { ...app, dir: resolve(file, '..') }
  try {
    checkAppDef(located)
  } catch (err) {
    throw new InvalidAppError(`${file}: ${(err as Error).message}`, { cause: err })
  }
  return located
}

type Fail = (field: string, problem: string) => never

/** An AppDef from parsed JSON, every field checked for type and unknown keys; `where` prefixes errors. */
export function parseAppDef(raw: unknown, where: string): AppDef {
  const fail: Fail = (field, problem) => {
    throw new InvalidAppError(`${where}: ${field}: ${problem}`)
  }
  const o = record(raw, 'app', fail, {
    required: ['name', 'description', 'enabledByDefault', 'detect', 'settings', 'phases', 'usesFrames'],
    optional: ['$comment', 'title', 'chunk', 'progress', 'outputs', 'selfTest'],
  })
  const settings: Record<string, SettingDef> = {}
  for (const [key, v] of Object.entries(record(o.settings, 'settings', fail))) {
    const at = `settings.${key}`
    if (!NAME_RE.test(key)) fail(at, 'is not a valid setting name')
    const s = record(v, at, fail, {
      required: ['type', 'description'],
      optional: ['default', 'min', 'max', 'pattern', 'format'],
    })
    if (!['string', 'number', 'boolean'].includes(typeof s.default) && s.default !== undefined)
      fail(`${at}.default`, 'must be a string, number or boolean')
    settings[key] = {
      type: str(s.type, `${at}.type`, fail) as SettingDef['type'],
      description: str(s.description, `${at}.description`, fail),
      ...opt('default', s.default as SettingDef['default']),
      ...opt('min', s.min === undefined ? undefined : num(s.min, `${at}.min`, fail)),
      ...opt('max', s.max === undefined ? undefined : num(s.max, `${at}.max`, fail)),
      ...opt('pattern', s.pattern === undefined ? undefined : str(s.pattern, `${at}.pattern`, fail)),
      ...opt('format', s.format === undefined ? undefined : (str(s.format, `${at}.format`, fail) as 'argv')),
    }
  }
  const phases = list(o.phases, 'phases', fail).map((v, i) => {
    const p = record(v, `phases[${i}]`, fail, {
      required: ['name', 'argv'],
      optional: ['env', 'timeoutMs'],
    })
    const env =
      p.env === undefined
        ? undefined
        : Object.fromEntries(
            Object.entries(record(p.env, `phases[${i}].env`, fail)).map(([k, x]) => [
              k,
              str(x, `phases[${i}].env.${k}`, fail),
            ]),
          )
    return {
      name: str(p.name, `phases[${i}].name`, fail),
      argv: strings(p.argv, `phases[${i}].argv`, fail),
      ...opt('env', env),
      ...opt(
        'timeoutMs',
        p.timeoutMs === undefined ? undefined : num(p.timeoutMs, `phases[${i}].timeoutMs`, fail),
      ),
    }
  })
  let detect: AppDetect | null = null
  if (o.detect !== null) {
    const d = record(o.detect, 'detect', fail, {
      required: ['command'],
      optional: ['versionArgs', 'versionPattern'],
    })
    detect = {
      command: str(d.command, 'detect.command', fail),
      ...opt(
        'versionArgs',
        d.versionArgs === undefined ? undefined : strings(d.versionArgs, 'detect.versionArgs', fail),
      ),
      ...opt(
        'versionPattern',
        d.versionPattern === undefined ? undefined : str(d.versionPattern, 'detect.versionPattern', fail),
      ),
    }
  }
  let outputs: OutputsDef | undefined
  if (o.outputs !== undefined) {
    const x = record(o.outputs, 'outputs', fail, { required: ['perFrame'], optional: ['pattern', 'errors'] })
    outputs = {
      perFrame: bool(x.perFrame, 'outputs.perFrame', fail),
      ...opt('pattern', x.pattern === undefined ? undefined : str(x.pattern, 'outputs.pattern', fail)),
      ...opt('errors', x.errors === undefined ? undefined : str(x.errors, 'outputs.errors', fail)),
    }
  }
  let selfTest: SelfTestDef | undefined
  if (o.selfTest !== undefined) {
    const x = record(o.selfTest, 'selfTest', fail, { required: ['kind'], optional: ['timeoutMs'] })
    const kind = str(x.kind, 'selfTest.kind', fail)
    if (kind !== 'blender' && kind !== 'ffmpeg')
      fail('selfTest.kind', `must be "blender" or "ffmpeg", got ${JSON.stringify(kind)}`)
    selfTest = {
      kind,
      ...opt(
        'timeoutMs',
        x.timeoutMs === undefined ? undefined : num(x.timeoutMs, 'selfTest.timeoutMs', fail),
      ),
    }
  }
  const chunk = o.chunk === 'all' || o.chunk === undefined ? o.chunk : num(o.chunk, 'chunk', fail)
  const chunkValue = chunk as number | 'all' | undefined
  return {
    name: str(o.name, 'name', fail),
    ...opt('title', o.title === undefined ? undefined : str(o.title, 'title', fail)),
    description: str(o.description, 'description', fail),
    enabledByDefault: bool(o.enabledByDefault, 'enabledByDefault', fail),
    detect,
    settings,
    phases,
    usesFrames: bool(o.usesFrames, 'usesFrames', fail),
    ...opt('chunk', chunkValue),
    ...opt('progress', o.progress === undefined ? undefined : strings(o.progress, 'progress', fail)),
    ...opt('outputs', outputs),
    ...opt('selfTest', selfTest),
  }
}

const opt = <K extends string, V>(key: K, v: V | undefined): { [k in K]?: V } =>
  (v === undefined ? {} : { [key]: v }) as { [k in K]?: V }

function record(
  v: unknown,
  field: string,
  fail: Fail,
  keys?: { required: readonly string[]; optional: readonly string[] },
): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(field, 'must be an object')
  const o = v as Record<string, unknown>
  if (keys !== undefined) {
    const known = [...keys.required, ...keys.optional]
    const prefix = field === 'app' ? '' : `${field}.`
    for (const k of Object.keys(o)) {
      if (!known.includes(k))
        fail(`${prefix}${k}`, `unknown key (known: ${known.filter((n) => n !== '$comment').join(', ')})`)
    }
    for (const k of keys.required) if (!Object.hasOwn(o, k)) fail(`${prefix}${k}`, 'is required')
  }
  return o
}

function list(v: unknown, field: string, fail: Fail): unknown[] {
  if (!Array.isArray(v)) fail(field, 'must be a list')
  return v as unknown[]
}

function strings(v: unknown, field: string, fail: Fail): string[] {
  return list(v, field, fail).map((x, i) => str(x, `${field}[${i}]`, fail))
}

function str(v: unknown, field: string, fail: Fail): string {
  if (typeof v !== 'string') fail(field, 'must be a string')
  return v as string
}

function num(v: unknown, field: string, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(field, 'must be a number')
  return v as number
}

function bool(v: unknown, field: string, fail: Fail): boolean {
  if (typeof v !== 'boolean') fail(field, 'must be true or false')
  return v as boolean
}

const APP_NAME_RE = /^[a-z][a-z0-9-]{0,63}$/
const GROUP_RE = /\(\?<([A-Za-z][A-Za-z0-9]*)>/g
const MAX_CHUNK = 1_000_000

/** Checks an app definition is usable: names, setting defaults, every placeholder resolvable, patterns. */
export function checkAppDef(app: AppDef): void {
  const fail: Fail = (field, problem) => {
    throw new InvalidAppError(`app ${JSON.stringify(app.name)}: ${field}: ${problem}`)
  }
  if (!APP_NAME_RE.test(app.name)) fail('name', 'must be a lowercase id')
  if (app.title !== undefined && !(app.title.length > 0 && app.title.length <= 64))
    fail('title', 'must be 1 to 64 characters')
  for (const [key, def] of Object.entries(app.settings)) {
    const reserved =
      FRAME_PLACEHOLDERS.includes(key) ||
      RUNNER_SPLICES.includes(key) ||
      (RUNNER_PLACEHOLDERS.includes(key) && key !== 'scene')
    if (!NAME_RE.test(key) || reserved) fail(`settings.${key}`, 'cannot be a setting name (reserved)')
    if (key === 'scene' && (def.type !== 'string' || def.pattern === undefined))
      fail('settings.scene', 'must be a string with a pattern (a relative path inside the inputs)')
    const problem = checkSetting(key, def)
    if (problem !== null) fail(`settings.${key}`, problem)
  }
  if (app.phases.length === 0) fail('phases', 'needs at least one phase')
  const phaseNames = new Set<string>()
  for (const [i, phase] of app.phases.entries()) checkPhase(app, phase, `phases[${i}]`, phaseNames, fail)
  if (app.detect !== null) {
    if (app.detect.command === '') fail('detect.command', 'is empty')
    if (app.detect.versionPattern !== undefined)
      compile(app.detect.versionPattern, 'detect.versionPattern', fail)
  }
  if (app.chunk !== undefined) {
    if (!app.usesFrames) fail('chunk', 'needs usesFrames')
    if (app.chunk !== 'all' && !(Number.isSafeInteger(app.chunk) && app.chunk >= 1 && app.chunk <= MAX_CHUNK))
      fail('chunk', `must be "all" or an integer from 1 to ${MAX_CHUNK}`)
  }
  app.progress?.forEach((p, i) => {
    const groups = namedGroups(compile(p, `progress[${i}]`, fail))
    const unknown = groups.find((g) => !PROGRESS_GROUPS.includes(g))
    if (unknown !== undefined)
      fail(`progress[${i}]`, `unknown group ${unknown} (known: ${PROGRESS_GROUPS.join(', ')})`)
    if (groups.length === 0)
      fail(`progress[${i}]`, `captures nothing (name groups: ${PROGRESS_GROUPS.join(', ')})`)
    if (groups.includes('sample') !== groups.includes('samples'))
      fail(`progress[${i}]`, 'needs both sample and samples')
    if (groups.includes('tile') !== groups.includes('tiles'))
      fail(`progress[${i}]`, 'needs both tile and tiles')
    if (groups.includes('elapsed') !== groups.includes('remaining'))
      fail(`progress[${i}]`, 'needs both elapsed and remaining')
  })
  const out = app.outputs
  if (out !== undefined) {
    if (
      out.pattern !== undefined &&
      !namedGroups(compile(out.pattern, 'outputs.pattern', fail)).includes('path')
    )
      fail('outputs.pattern', 'needs a named group path: (?<path>...)')
    if (out.errors !== undefined) compile(out.errors, 'outputs.errors', fail)
    if (out.perFrame && (out.pattern === undefined || !app.usesFrames))
      fail('outputs.perFrame', 'needs a pattern and usesFrames')
  }
  const t = app.selfTest?.timeoutMs
  if (t !== undefined && !(Number.isSafeInteger(t) && t > 0))
    fail('selfTest.timeoutMs', 'must be a positive integer')
}

function checkPhase(
  app: AppDef,
  phase: AppDef['phases'][number],
  at: string,
  seen: Set<string>,
  fail: Fail,
): void {
  if (!NAME_RE.test(phase.name)) fail(`${at}.name`, 'must be a name')
  if (seen.has(phase.name)) fail(`${at}.name`, `duplicate phase name ${phase.name}`)
  seen.add(phase.name)
  if (phase.argv.length === 0) fail(`${at}.argv`, 'is empty')
  if (phase.timeoutMs !== undefined && !(Number.isSafeInteger(phase.timeoutMs) && phase.timeoutMs > 0))
    fail(`${at}.timeoutMs`, 'must be a positive integer')
  let names: TemplateNames
  try {
    names = templateNames(phase.argv)
  } catch (err) {
    fail(`${at}.argv`, (err as Error).message)
  }
  for (const name of names.splices) {
    if (RUNNER_SPLICES.includes(name)) {
      if (!app.usesFrames) fail(`${at}.argv`, `{...${name}} in an app without frames`)
    } else if (app.settings[name]?.format !== 'argv') {
      fail(`${at}.argv`, `{...${name}} needs a setting of format 'argv'`)
    }
  }
  checkRefs(app, names.refs, `${at}.argv`, fail)
  const env = Object.entries(phase.env ?? {})
  if (env.length > MAX_ENV) fail(`${at}.env`, `has more than ${MAX_ENV} variables`)
  for (const [name, value] of env) {
    const field = `${at}.env.${name}`
    if (!ENV_NAME_RE.test(name)) fail(field, 'must be a name in capitals (A-Z, 0-9, _)')
    if (RUNNER_ENV.includes(name)) fail(field, 'is set by the runner')
    let parsed: ReturnType<typeof parseElement>
    try {
      parsed = parseElement(value)
    } catch (err) {
      fail(field, (err as Error).message)
    }
    if (parsed.kind === 'splice') fail(field, 'takes one value: no {...name} splice')
    checkRefs(app, templateNames([value]).refs, field, fail)
  }
}

/** Each placeholder a template refers to resolves: a setting, a frame or runner placeholder. */
function checkRefs(app: AppDef, refs: ReadonlySet<string>, field: string, fail: Fail): void {
  for (const name of refs) {
    if (app.settings[name]?.format === 'argv')
      fail(field, `setting ${name} holds a JSON argv; splice it with {...${name}}`)
    if (FRAME_PLACEHOLDERS.includes(name)) {
      if (!app.usesFrames) fail(field, `{${name}} in an app without frames`)
    } else if (!RUNNER_PLACEHOLDERS.includes(name) && !Object.hasOwn(app.settings, name)) {
      fail(field, `{${name}} is neither a setting nor a frame or runner placeholder`)
    }
  }
}

function compile(pattern: string, field: string, fail: Fail): RegExp {
  try {
    return new RegExp(pattern, 'u')
  } catch (err) {
    return fail(field, `bad regular expression: ${(err as Error).message}`)
  }
}

const namedGroups = (re: RegExp): string[] => [...re.source.matchAll(GROUP_RE)].map((m) => m[1]!)
