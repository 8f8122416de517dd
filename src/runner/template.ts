// The argv template language, kept apart from rendering so that app definitions can be checked on
// load. One template element becomes exactly one argv element, except '{...name}' on its own,
// which splices a setting holding a JSON array of strings (the `command` app), or a runner splice.
//
//   '{name}'   a setting, a frame placeholder: {first} {last} {frame} {step}, or a runner placeholder
//              filled by the worker, never by a job: {scene} {indir} {outdir} {workdir} {threads}
//              {device} {appdir} {border} (the task's tile of the frame for Blender, or 'none')
//   '{{' '}}'  literal braces
//   '{...name}' the whole element: splice an argv-format setting, or {...stitch}: the ffmpeg argv the
//              runner computes to stitch a frame's tiles from the task's inputs into its outputs

import { InvalidTemplateError } from './errors.ts'

/** Placeholders filled from the task's frames, not from settings; no setting may take these names. */
export const FRAME_PLACEHOLDERS: readonly string[] = ['first', 'last', 'frame', 'step']

/**
 * Placeholders the worker fills from where and how it runs the task (RunContext in argv.ts). No setting
 * may take these names, except `scene`: the setting is the main file's path relative to the inputs,
 * and `{scene}` is where the worker put it (absolute).
 */
export const RUNNER_PLACEHOLDERS: readonly string[] = [
  'scene',
  'indir',
  'outdir',
  'workdir',
  'threads',
  'device',
  'appdir',
  'border',
]

/**
 * Splices the runner computes whole (argv.ts), never from a job value: {...stitch} is the ffmpeg
 * command that stitches the tiles of the task's frame from <indir>/tiles/ into <outdir>. No setting
 * may take these names.
 */
export const RUNNER_SPLICES: readonly string[] = ['stitch']

/** Setting and placeholder names: also valid as JobSpec args keys. */
export const NAME_RE = /^[A-Za-z][A-Za-z0-9_]*$/

export type TemplatePart =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'ref'; readonly name: string }

export type TemplateElement =
  | { readonly kind: 'parts'; readonly parts: readonly TemplatePart[] }
  | { readonly kind: 'splice'; readonly name: string }

const TOKEN_RE = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g

/** Parses one argv template element; throws InvalidTemplateError on a malformed placeholder. */
export function parseElement(element: string): TemplateElement {
  const parts: TemplatePart[] = []
  let last = 0
  for (const m of element.matchAll(TOKEN_RE)) {
    if (m.index > last) parts.push({ kind: 'text', text: element.slice(last, m.index) })
    last = m.index + m[0].length
    const token = m[0]
    const inner = m[1]
    if (token === '{{' || token === '}}') {
      parts.push({ kind: 'text', text: token[0]! })
    } else if (inner === undefined) {
      throw new InvalidTemplateError(
        `stray "${token}" in argv element ${JSON.stringify(element)} (write ${token}${token} for a literal brace)`,
      )
    } else if (inner.startsWith('...')) {
      const name = inner.slice(3)
      if (token !== element || !NAME_RE.test(name)) {
        throw new InvalidTemplateError(
          `"{...name}" must be a whole argv element, in ${JSON.stringify(element)}`,
        )
      }
      return { kind: 'splice', name }
    } else if (NAME_RE.test(inner)) {
      parts.push({ kind: 'ref', name: inner })
    } else {
      throw new InvalidTemplateError(`bad placeholder "${token}" in argv element ${JSON.stringify(element)}`)
    }
  }
  if (last < element.length) parts.push({ kind: 'text', text: element.slice(last) })
  return { kind: 'parts', parts }
}

export interface TemplateNames {
  /** Names substituted inside an element: '{name}'. */
  readonly refs: Set<string>
  /** Names spliced as whole argv lists: '{...name}'. */
  readonly splices: Set<string>
}

/** Every template of a phase: its argv elements, then the values of its environment. */
export const phaseTemplates = (phase: {
  readonly argv: readonly string[]
  readonly env?: Readonly<Record<string, string>>
}): readonly string[] => [...phase.argv, ...Object.values(phase.env ?? {})]

/** Every name an argv template refers to. */
export function templateNames(argv: readonly string[]): TemplateNames {
  const names: TemplateNames = { refs: new Set(), splices: new Set() }
  for (const element of argv) {
    const parsed = parseElement(element)
    if (parsed.kind === 'splice') names.splices.add(parsed.name)
    else for (const p of parsed.parts) if (p.kind === 'ref') names.refs.add(p.name)
  }
  return names
}
