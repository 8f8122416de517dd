import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Dependency, SceneInfo } from '../../src/runner/blender/inspect.ts'
import { planInputs, remapTable } from '../../src/runner/blender/layout.ts'

const dep = (kind: Dependency['kind'], absolute: string, exists = true): Dependency => ({
  kind,
  written: absolute,
  absolute,
  exists,
})

const scene = (file: string, dependencies: Dependency[]) => ({ file, dependencies }) as unknown as SceneInfo

describe('planInputs', () => {
  it('keeps the scene and its files in place relative to their common folder', () => {
    const layout = planInputs(
      scene('/home/ann/film/shots/010/main.blend', [
        dep('image', '/home/ann/film/textures/wood.png'),
        dep('library', '/home/ann/assets/props.blend'),
        dep('image', '/home/ann/film/textures/wood.png'),
        dep('sound', '/home/ann/film/missing.wav', false),
      ]),
    )
    assert.deepEqual(layout, {
      root: '/home/ann',
      scene: 'film/shots/010/main.blend',
      files: [
        { source: '/home/ann/film/shots/010/main.blend', path: 'film/shots/010/main.blend' },
        { source: '/home/ann/film/textures/wood.png', path: 'film/textures/wood.png' },
        { source: '/home/ann/assets/props.blend', path: 'assets/props.blend' },
      ],
      missing: [dep('sound', '/home/ann/film/missing.wav', false)],
    })
    assert.deepEqual(remapTable(layout, '/farm/task/in'), { '/home/ann': '/farm/task/in' })
  })

  it('a scene alone sits in its own folder; files spread over the disk keep their absolute layout', () => {
    assert.deepEqual(planInputs(scene('/a/b/s.blend', [])).scene, 's.blend')
    const wide = planInputs(scene('/a/s.blend', [dep('font', '/usr/share/fonts/x.ttf')]))
    assert.equal(wide.root, '/')
    assert.deepEqual(
      wide.files.map((f) => f.path),
      ['a/s.blend', 'usr/share/fonts/x.ttf'],
    )
  })
})
