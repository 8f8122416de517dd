// Applications as data: how to find the binary, which settings a job may give, and the argv template
// of each phase. Typed objects for now; the same shape is meant to load from JSON files later
// (Blender: frames via {first}/{last}/{step}, a file setting with a pattern; ffmpeg: a dependent job).

import { InvalidAppError, UnknownAppError } from './errors.ts'
import { checkSetting, type SettingDef } from './settings.ts'
import { FRAME_PLACEHOLDERS, NAME_RE, type TemplateNames, templateNames } from './template.ts'

export { InvalidSettingsError, UnknownAppError } from './errors.ts'
export { type SettingDef, type SettingType, type SettingValue, validateSettings } from './settings.ts'

export interface AppDetect {
  /** Looked up on PATH (or taken as a path if it holds a '/'); never run through a shell. */
  readonly command: string
  /** Arguments that make the command print its version, e.g. ['--version']. */
  readonly versionArgs?: readonly string[]
  /** Regular expression over the version output; group 1 (or the whole match) is the version. */
  readonly versionPattern?: string
}

export interface PhaseDef {
  readonly name: string
  /** argv template: argv[0] is the command; see template.ts for the placeholders. */
  readonly argv: readonly string[]
  readonly timeoutMs?: number
}

export interface AppDef {
  /** Also the JobSpec's `app`: a lowercase id. */
  readonly name: string
  readonly description: string
  /** Hosts run an app only if their owner enabled it; this is the default when they said nothing. */
  readonly enabledByDefault: boolean
  /** null: nothing to detect (the job brings its own command). */
  readonly detect: AppDetect | null
  readonly settings: Readonly<Record<string, SettingDef>>
  readonly phases: readonly PhaseDef[]
  /** Jobs of this app have a frame range split into chunks; otherwise frames are null and one task runs. */
  readonly usesFrames: boolean
}

const echo: AppDef = {
  name: 'echo',
  description: 'Prints its frames and a text: a harmless app to try a farm with.',
  enabledByDefault: true,
  detect: { command: 'echo' },
  settings: {
    text: { type: 'string', default: 'hello', description: 'Text printed after the frame range.' },
  },
  phases: [{ name: 'run', argv: ['echo', 'frames {first}-{last}: {text}'], timeoutMs: 60_000 }],
  usesFrames: true,
}

const sleep: AppDef = {
  name: 'sleep',
  description: 'Sleeps for a while per task: a stand-in for real work when testing scheduling.',
  enabledByDefault: true,
  detect: { command: 'sleep' },
  settings: {
    seconds: { type: 'number', default: 1, min: 0, max: 3600, description: 'Seconds each task sleeps.' },
  },
  phases: [{ name: 'run', argv: ['sleep', '{seconds}'] }],
  usesFrames: true,
}

const command: AppDef = {
  name: 'command',
  description:
    'Runs any command given as a JSON array of strings (no shell). Off unless the host owner enables it.',
  enabledByDefault: false,
  detect: null,
  settings: {
    argv: {
      type: 'string',
      format: 'argv',
      description: 'The command and its arguments as a JSON array of strings, e.g. ["make","-j4"].',
    },
  },
  phases: [{ name: 'run', argv: ['{...argv}'] }],
  usesFrames: false,
}

export const BUILTIN_APPS: readonly AppDef[] = Object.freeze([echo, sleep, command])

/** The application called `name`; throws UnknownAppError. */
export function getApp(name: string, apps: readonly AppDef[] = BUILTIN_APPS): AppDef {
  const app = apps.find((a) => a.name === name)
  if (app === undefined) {
    const known = apps.map((a) => a.name).join(', ')
    throw new UnknownAppError(`unknown application ${JSON.stringify(name)} (known: ${known})`)
  }
  return app
}

const APP_NAME_RE = /^[a-z][a-z0-9-]{0,63}$/

/** Checks an app definition is usable: names, setting defaults, and every placeholder resolvable. */
export function checkAppDef(app: AppDef): void {
  const where = `app ${JSON.stringify(app.name)}`
  if (!APP_NAME_RE.test(app.name)) throw new InvalidAppError(`${where}: name must be a lowercase id`)
  for (const [key, def] of Object.entries(app.settings)) {
    if (!NAME_RE.test(key) || FRAME_PLACEHOLDERS.includes(key)) {
      throw new InvalidAppError(`${where}: ${JSON.stringify(key)} cannot be a setting name`)
    }
    const problem = checkSetting(key, def)
    if (problem !== null) throw new InvalidAppError(`${where}: ${problem}`)
  }
  if (app.phases.length === 0) throw new InvalidAppError(`${where}: needs at least one phase`)
  const phaseNames = new Set<string>()
  for (const phase of app.phases) {
    const at = `${where} phase ${JSON.stringify(phase.name)}`
    if (phaseNames.has(phase.name)) throw new InvalidAppError(`${at}: duplicate phase name`)
    phaseNames.add(phase.name)
    if (phase.argv.length === 0) throw new InvalidAppError(`${at}: argv is empty`)
    if (phase.timeoutMs !== undefined && !(Number.isSafeInteger(phase.timeoutMs) && phase.timeoutMs > 0)) {
      throw new InvalidAppError(`${at}: timeoutMs must be a positive integer`)
    }
    let names: TemplateNames
    try {
      names = templateNames(phase.argv)
    } catch (err) {
      throw new InvalidAppError(`${at}: ${(err as Error).message}`, { cause: err })
    }
    for (const name of names.splices) {
      if (app.settings[name]?.format !== 'argv') {
        throw new InvalidAppError(`${at}: {...${name}} needs a setting of format 'argv'`)
      }
    }
    for (const name of names.refs) {
      if (app.settings[name]?.format === 'argv') {
        throw new InvalidAppError(`${at}: setting ${name} holds a JSON argv; splice it with {...${name}}`)
      }
      if (FRAME_PLACEHOLDERS.includes(name)) {
        if (!app.usesFrames) throw new InvalidAppError(`${at}: {${name}} in an app without frames`)
      } else if (!Object.hasOwn(app.settings, name)) {
        throw new InvalidAppError(`${at}: {${name}} is neither a setting nor a frame placeholder`)
      }
    }
  }
}

/** Whether any phase of the app renders one frame per task ('{frame}'), which needs chunk 1. */
export function usesSingleFrame(app: AppDef): boolean {
  return app.phases.some((p) => templateNames(p.argv).refs.has('frame'))
}
