// Applications as config files: how to find the binary, which settings a job may give, the argv
// template of each phase, how to read progress and outputs, and how to self-test. The built-ins are
// JSON files in ./apps/ (blender, ffmpeg, command, echo, sleep); a host owner may add directories.

import { loadApps } from './appconfig.ts'
import { UnknownAppError } from './errors.ts'
import type { SettingDef } from './settings.ts'
import { phaseTemplates, templateNames } from './template.ts'

export {
  BUILTIN_APPS_DIR,
  checkAppDef,
  loadAppFile,
  loadApps,
  PROGRESS_GROUPS,
  parseAppDef,
} from './appconfig.ts'
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
  /**
   * Environment variables the phase's process gets besides the node's own, each value a template
   * like an argv element (no splices). Blender's phase passes prep.py its options this way: arguments
   * after '--' would make Cycles build its argparse parser at every start (~25 ms of CPU per task).
   */
  readonly env?: Readonly<Record<string, string>>
  readonly timeoutMs?: number
}

/** How to tell what a phase produced (outputs.ts). */
export interface OutputsDef {
  /** A line naming a file written, with a named group `path`; without it, every file in outdir counts. */
  readonly pattern?: string
  /** Every expected frame must have its own output line and file. */
  readonly perFrame: boolean
  /** Lines quoted in the reason when outputs are missing (the application's own error message). */
  readonly errors?: string
}

/** What the self-test at start does (selftest.ts). */
export interface SelfTestDef {
  readonly kind: 'blender' | 'ffmpeg'
  readonly timeoutMs?: number
}

export interface AppDef {
  /** Also the JobSpec's `app`: a lowercase id. */
  readonly name: string
  /** For messages ('Blender saved 3 of 4 frames'); default the name. */
  readonly title?: string
  readonly description: string
  /** Hosts run an app only if their owner enabled it; this is the default when they said nothing. */
  readonly enabledByDefault: boolean
  /** null: nothing to detect (the job brings its own command). */
  readonly detect: AppDetect | null
  readonly settings: Readonly<Record<string, SettingDef>>
  readonly phases: readonly PhaseDef[]
  /** Jobs of this app have a frame range split into chunks; otherwise frames are null and one task runs. */
  readonly usesFrames: boolean
  /** Default frames per task: a number, or 'all' for one task over the whole range. */
  readonly chunk?: number | 'all'
  /** Regular expressions over output lines with named groups among PROGRESS_GROUPS (progress.ts). */
  readonly progress?: readonly string[]
  readonly outputs?: OutputsDef
  readonly selfTest?: SelfTestDef
  /** The directory of the app's config file ({appdir}); set by the loader. */
  readonly dir?: string
}

/** The built-in applications, loaded from ./apps/*.json when this module loads. */
export const BUILTIN_APPS: readonly AppDef[] = Object.freeze(loadApps())

/** The application called `name`; throws UnknownAppError. */
export function getApp(name: string, apps: readonly AppDef[] = BUILTIN_APPS): AppDef {
  const app = apps.find((a) => a.name === name)
  if (app === undefined) {
    const known = apps.map((a) => a.name).join(', ')
    throw new UnknownAppError(`unknown application ${JSON.stringify(name)} (known: ${known})`)
  }
  return app
}

/** The application's name for messages. */
export const appTitle = (app: AppDef): string => app.title ?? app.name

/**
 * Whether any phase of the app renders one frame per task ('{frame}', or the stitch of one frame's
 * tiles), which needs chunk 1.
 */
export function usesSingleFrame(app: AppDef): boolean {
  return app.phases.some((p) => {
    const names = templateNames(phaseTemplates(p))
    return names.refs.has('frame') || names.splices.has('stitch')
  })
}

/** Whether the app renders tiles of a frame: a phase takes the task's '{border}'. */
export function usesTiles(app: AppDef): boolean {
  return app.phases.some((p) => templateNames(phaseTemplates(p)).refs.has('border'))
}
