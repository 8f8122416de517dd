// Tiles of one frame (for stills): tile i of a grid as a pixel rectangle and as Blender's border
// (y counts from the bottom; Blender truncates border * size to pixels, so a boundary at pixel p is
// passed as (p + 0.5) / size), and the ffmpeg arguments that stitch the tiles back. Blender renders
// each tile uncropped (a full-size image, only the border filled; prep.py), because its dither noise
// depends on a pixel's place in the image: the stitch crops each tile's rectangle out and xstacks
// them, pixel-identical to the full frame rendered at once, dither and all.

import { InvalidSubmitError } from '../errors.ts'

export interface TileGrid {
  readonly cols: number
  readonly rows: number
}

export interface Tile {
  readonly index: number
  /** Pixel rectangle, origin at the top left (as images and ffmpeg count). */
  readonly x: number
  readonly y: number
  readonly width: number
  readonly height: number
  /** Blender's border, 0..1, origin at the bottom left. */
  readonly border: {
    readonly minX: number
    readonly maxX: number
    readonly minY: number
    readonly maxY: number
  }
}

export const MAX_TILES = 256

/** The most square grid of `count` tiles (cols >= rows, cols x rows = count). */
export function tileGrid(count: number): TileGrid {
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_TILES) {
    throw new InvalidSubmitError(`tiles must be an integer from 1 to ${MAX_TILES}, got ${count}`)
  }
  let rows = Math.floor(Math.sqrt(count))
  while (count % rows !== 0) rows--
  return { cols: count / rows, rows }
}

/** Tile `index` (row by row from the top left) of `grid` over a width x height frame. */
export function tileRect(index: number, grid: TileGrid, width: number, height: number): Tile {
  const { cols, rows } = grid
  if (!(Number.isSafeInteger(cols) && Number.isSafeInteger(rows) && cols >= 1 && rows >= 1)) {
    throw new InvalidSubmitError(`bad tile grid ${cols}x${rows}`)
  }
  if (!Number.isSafeInteger(index) || index < 0 || index >= cols * rows) {
    throw new InvalidSubmitError(`tile ${index} is not in a ${cols}x${rows} grid`)
  }
  if (!(Number.isSafeInteger(width) && Number.isSafeInteger(height) && width >= cols && height >= rows)) {
    throw new InvalidSubmitError(`a ${width}x${height} frame cannot be cut into ${cols}x${rows} tiles`)
  }
  const c = index % cols
  const r = Math.floor(index / cols)
  const x0 = Math.floor((c * width) / cols)
  const x1 = Math.floor(((c + 1) * width) / cols)
  const y0 = Math.floor((r * height) / rows)
  const y1 = Math.floor(((r + 1) * height) / rows)
  const at = (p: number, size: number) => (p <= 0 ? 0 : p >= size ? 1 : (p + 0.5) / size)
  return {
    index,
    x: x0,
    y: y0,
    width: x1 - x0,
    height: y1 - y0,
    border: {
      minX: at(x0, width),
      maxX: at(x1, width),
      minY: at(height - y1, height),
      maxY: at(height - y0, height),
    },
  }
}

/** Every tile of the grid, in index order. */
export function tilesOf(grid: TileGrid, width: number, height: number): Tile[] {
  return Array.from({ length: grid.cols * grid.rows }, (_, i) => tileRect(i, grid, width, height))
}

/** prep.py's OPENFARM_BORDER value: MINX,MAXX,MINY,MAXY. */
export function borderArg(tile: Tile): string {
  const b = tile.border
  return [b.minX, b.maxX, b.minY, b.maxY].map(String).join(',')
}

/**
 * ffmpeg argv that stitches the tile images into `output`: `inputs[i]` is a full-size image holding
 * tile i in its rectangle (Blender's uncropped border render); each is cropped to it, then xstacked.
 */
export function stitchArgv(tiles: readonly Tile[], inputs: readonly string[], output: string): string[] {
  if (tiles.length === 0 || tiles.length !== inputs.length) {
    throw new InvalidSubmitError(
      `stitching needs one image per tile (${tiles.length} tiles, ${inputs.length} images)`,
    )
  }
  const argv = ['ffmpeg', '-y', '-v', 'error', '-nostdin']
  for (const input of inputs) argv.push('-i', input)
  const crop = (t: Tile) => `crop=${t.width}:${t.height}:${t.x}:${t.y}:exact=1`
  if (tiles.length === 1) {
    argv.push('-vf', crop(tiles[0]!))
  } else {
    const cropped = tiles.map((t, i) => `[${i}:v]${crop(t)}[t${i}]`).join(';')
    const layout = tiles.map((t) => `${t.x}_${t.y}`).join('|')
    const stack = `${tiles.map((_, i) => `[t${i}]`).join('')}xstack=inputs=${tiles.length}:layout=${layout}`
    argv.push('-filter_complex', `${cropped};${stack}`)
  }
  argv.push('-frames:v', '1', '-update', '1', output)
  return argv
}

/** Blender's `frame_####` name of a frame's image (at least 4 digits, like printf's %.4d). */
export function frameFileName(frame: number): string {
  const digits = String(Math.abs(frame)).padStart(4, '0')
  return `frame_${frame < 0 ? '-' : ''}${digits}.png`
}

/** Where a tile task's image is published (relative to the job's outputs) and a stitch finds it. */
export const TILES_DIR = 'tiles'

/** tiles/frame_0007_tile_003.png: one name per tile, so the tiles of a frame never collide. */
export function tilePath(frame: number, tile: number): string {
  return `${TILES_DIR}/${frameFileName(frame).replace(/\.png$/, '')}_tile_${String(tile).padStart(3, '0')}.png`
}
