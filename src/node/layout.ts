// Where a scene's files go in a task's input directory. Every file (the .blend, the libraries it
// links, the images, fonts and caches they use) keeps its place relative to the others, under their
// deepest common directory, so every relative reference (`//textures/wood.png`, `//../lib.blend`)
// resolves on the worker as it did on the submitter. Each file also keeps its original absolute path
// in `orig`: the worker maps every reference that resolves there (an absolute path written in the
// scene or in a library it links, which Blender lists once per file) to the file's new place.

import { dirname, isAbsolute, normalize, relative, sep } from 'node:path'
import { isSafeRelPath } from '../crdt/files.ts'

export interface SceneDependency {
  /** As the scene wrote it: '//textures/wood.png' (relative to its .blend) or an absolute path. */
  readonly written: string
  /** Resolved on this machine. */
  readonly absolute: string
  readonly exists: boolean
  readonly kind?: string
}

export interface PlannedFile {
  /** Absolute path on the submitting machine. */
  readonly source: string
  /** Path inside the task's input directory. */
  readonly path: string
  /** The absolute path the scene wrote for it, when it wrote one. */
  readonly orig?: string
}

export class MissingDependencyError extends Error {
  static override readonly name = 'MissingDependencyError'
  override readonly name = 'MissingDependencyError'
}

export interface ScenePlan {
  readonly files: PlannedFile[]
  /** The main .blend's path inside the input directory. */
  readonly scene: string
}

/** Plans the input layout of a scene; throws MissingDependencyError naming every missing file. */
export function planSceneFiles(blend: string, deps: readonly SceneDependency[]): ScenePlan {
  if (!isAbsolute(blend)) throw new Error(`planSceneFiles needs an absolute path, got ${blend}`)
  const missing = deps.filter((d) => !d.exists)
  if (missing.length > 0) {
    const list = missing
      .slice(0, 10)
      .map((d) => `${d.written}${d.written === d.absolute ? '' : ` (${d.absolute})`}`)
      .join(', ')
    const more = missing.length > 10 ? ` and ${missing.length - 10} more` : ''
    throw new MissingDependencyError(
      `the scene needs ${missing.length} file(s) that do not exist: ${list}${more}. ` +
        'Fix the paths in Blender (File > External Data > Report Missing Files), then submit again',
    )
  }
  const sources = new Set<string>([normalize(blend), ...deps.map((d) => normalize(d.absolute))])
  const root = commonDir([...sources].map((p) => dirname(p)))
  const files: PlannedFile[] = []
  for (const source of sources) {
    const path = relative(root, source).split(sep).join('/')
    if (!isSafeRelPath(path)) throw new Error(`cannot place ${source} under ${root}`)
    files.push({ source, path, orig: source })
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return { files, scene: relative(root, normalize(blend)).split(sep).join('/') }
}

/** The deepest directory containing all of `dirs` (absolute, normalised). */
export function commonDir(dirs: readonly string[]): string {
  const split = dirs.map((d) => d.split(sep))
  const first = split[0] ?? ['']
  let n = first.length
  for (const s of split) {
    let i = 0
    while (i < n && i < s.length && s[i] === first[i]) i++
    n = i
  }
  return first.slice(0, n).join(sep) || sep
}
