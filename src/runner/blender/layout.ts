// Where a scene's files go in a task's inputs: the scene and every dependency keep their places
// relative to their common folder, so relative references ('//../textures/wood.png') resolve as on
// the submitter's machine; absolute ones are remapped by prep.py with one entry: the common folder
// on the submitter's machine -> the task's in/ directory.

import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import type { Dependency, SceneInfo } from './inspect.ts'

export interface InputFile {
  /** Absolute path on the submitter's machine. */
  readonly source: string
  /** Path inside the task's inputs ('/'-separated, relative). */
  readonly path: string
}

export interface InputLayout {
  /** The common folder of the scene and its files on the submitter's machine. */
  readonly root: string
  /** The main .blend inside the inputs: the job's `scene` setting. */
  readonly scene: string
  /** The scene first, then each file it needs, once. */
  readonly files: readonly InputFile[]
  /** Dependencies that do not exist on the submitter's machine: they cannot be shipped. */
  readonly missing: readonly Dependency[]
}

/** The inputs of a job for the inspected scene. */
export function planInputs(info: SceneInfo): InputLayout {
  const present = info.dependencies.filter((d) => d.exists)
  const sources = [...new Set([info.file, ...present.map((d) => d.absolute)])]
  const root = commonFolder(sources)
  const rel = (p: string) => relative(root, p).split(sep).join('/')
  return {
    root,
    scene: rel(info.file),
    files: sources.map((source) => ({ source, path: rel(source) })),
    missing: info.dependencies.filter((d) => !d.exists),
  }
}

/** prep.py's remap.json for a task whose inputs are laid out under `indir`. */
export function remapTable(layout: Pick<InputLayout, 'root'>, indir: string): Record<string, string> {
  return { [layout.root]: indir }
}

function commonFolder(paths: readonly string[]): string {
  const split = paths.map((p) => {
    if (!isAbsolute(p)) throw new Error(`not an absolute path: ${p}`)
    return dirname(p).split(sep)
  })
  const first = split[0] ?? ['']
  let n = first.length
  for (const parts of split) {
    let i = 0
    while (i < n && i < parts.length && parts[i] === first[i]) i++
    n = i
  }
  return join(sep, ...first.slice(0, n))
}
