import assert from 'node:assert/strict'
import { test } from 'node:test'
import { commonDir, MissingDependencyError, planSceneFiles } from '../../src/node/layout.ts'

test('a scene keeps its relative layout; every file keeps its original path for the remap', () => {
  const plan = planSceneFiles('/home/u/proj/shot/main.blend', [
    { written: '//../textures/wood.png', absolute: '/home/u/proj/textures/wood.png', exists: true },
    { written: '/home/u/proj/lib/lib.blend', absolute: '/home/u/proj/lib/lib.blend', exists: true },
    { written: '//../textures/wood.png', absolute: '/home/u/proj/textures/wood.png', exists: true },
  ])
  assert.equal(plan.scene, 'shot/main.blend')
  assert.deepEqual(plan.files, [
    { source: '/home/u/proj/lib/lib.blend', path: 'lib/lib.blend', orig: '/home/u/proj/lib/lib.blend' },
    { source: '/home/u/proj/shot/main.blend', path: 'shot/main.blend', orig: '/home/u/proj/shot/main.blend' },
    {
      source: '/home/u/proj/textures/wood.png',
      path: 'textures/wood.png',
      orig: '/home/u/proj/textures/wood.png',
    },
  ])
})

test('files spread over the disk go under their common root', () => {
  const plan = planSceneFiles('/home/u/a.blend', [
    { written: '/usr/share/fonts/x.ttf', absolute: '/usr/share/fonts/x.ttf', exists: true },
  ])
  assert.equal(plan.scene, 'home/u/a.blend')
  assert.deepEqual(
    plan.files.map((f) => f.path),
    ['home/u/a.blend', 'usr/share/fonts/x.ttf'],
  )
  assert.equal(commonDir(['/a/b/c', '/a/b', '/a/bc']), '/a')
})

test('a missing dependency is reported at submit, every one of them', () => {
  assert.throws(
    () =>
      planSceneFiles('/p/main.blend', [
        { written: '//tex/a.png', absolute: '/p/tex/a.png', exists: false },
        { written: '/q/b.png', absolute: '/q/b.png', exists: false },
      ]),
    (err: Error) =>
      err instanceof MissingDependencyError &&
      /\/\/tex\/a\.png \(\/p\/tex\/a\.png\), \/q\/b\.png/.test(err.message),
  )
})
