// Renders a phase's argv for one task. Each template element becomes one argv element (a value with
// spaces or shell syntax stays one element, and is never read by a shell); substitution is one pass,
// so a value holding '{first}' stays literal. Only '{...name}' of an argv-format setting splices.

import { type JobSpec, taskFrames } from '../crdt/schema.ts'
import type { AppDef, PhaseDef } from './apps.ts'
import { InvalidTemplateError } from './errors.ts'
import { argvOfSetting, type SettingValue, validateSettings } from './settings.ts'
import { parseElement } from './template.ts'

/** The argv of `phase` for task `taskIndex` of `spec`; throws InvalidTemplateError or InvalidSettingsError. */
export function renderArgv(app: AppDef, phase: PhaseDef, spec: JobSpec, taskIndex: number): string[] {
  if (spec.app !== app.name) {
    throw new InvalidTemplateError(`job ${spec.id} is for app ${spec.app}, not ${app.name}`)
  }
  if (!Number.isSafeInteger(taskIndex) || taskIndex < 0 || taskIndex >= spec.taskCount) {
    throw new InvalidTemplateError(`task ${taskIndex} is not in job ${spec.id} (${spec.taskCount} tasks)`)
  }
  // The spec came through the farm document from some peer: check its args again before use.
  const settings = validateSettings(app, spec.args)
  const values = placeholderValues(spec, taskIndex, settings)
  const argv: string[] = []
  for (const element of phase.argv) {
    const parsed = parseElement(element)
    if (parsed.kind === 'splice') {
      const text = settings[parsed.name]
      if (typeof text !== 'string')
        throw new InvalidTemplateError(`{...${parsed.name}} is not a setting of ${app.name}`)
      argv.push(...argvOfSetting(text))
      continue
    }
    let out = ''
    for (const part of parsed.parts) {
      if (part.kind === 'text') {
        out += part.text
        continue
      }
      const value = values.get(part.name)
      if (value === undefined) {
        throw new InvalidTemplateError(
          `unknown placeholder {${part.name}} in phase ${phase.name} of ${app.name}`,
        )
      }
      if (typeof value === 'object') throw value
      out += String(value)
    }
    argv.push(out)
  }
  if (argv.length === 0 || argv[0] === '')
    throw new InvalidTemplateError(`phase ${phase.name} has no command`)
  return argv
}

// Settings plus the task's frames; a frame placeholder that cannot apply maps to its error, thrown
// only if the template uses it.
function placeholderValues(
  spec: JobSpec,
  taskIndex: number,
  settings: Record<string, SettingValue>,
): Map<string, SettingValue | InvalidTemplateError> {
  const values = new Map<string, SettingValue | InvalidTemplateError>(Object.entries(settings))
  const frames = taskFrames(spec, taskIndex)
  if (frames === null || spec.frames === null) {
    const err = new InvalidTemplateError(`job ${spec.id} has no frames`)
    for (const name of ['first', 'last', 'frame', 'step']) values.set(name, err)
    return values
  }
  const [first, last] = frames
  values.set('first', first)
  values.set('last', last)
  values.set('step', spec.frames.step)
  values.set(
    'frame',
    first === last
      ? first
      : new InvalidTemplateError(`{frame} needs one frame per task; task ${taskIndex} has ${first}-${last}`),
  )
  return values
}

const PLAIN_RE = /^[A-Za-z0-9_/.,:=+@%-]+$/

/** argv as a POSIX shell would need it quoted: for logs and display only, never executed. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (PLAIN_RE.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ')
}
