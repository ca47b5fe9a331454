// A tiled log held in a Map, for tests of readers, monitors and witnesses.
import { utf8 } from '@custody/core';
import { signCheckpoint } from '../checkpoint/checkpoint.js';
import { rfc6962 } from '../merkle/hasher.js';
import type { NoteSigner } from '../note/note.js';
import { integrate } from '../tiles/integrate.js';
import { tilePath, type TileId } from '../tiles/paths.js';
import { mapLogSource } from './fs-source.js';
import type { LogSource } from '../client/log-source.js';

export class MemoryTiledLog {
  readonly files = new Map<string, Uint8Array>();
  size = 0;
  root = rfc6962.emptyRoot();

  constructor(
    readonly origin: string,
    private readonly signer: NoteSigner,
  ) {}

  readTile = (t: TileId): Promise<Uint8Array> => {
    const b = this.files.get(tilePath(t));
    return b ? Promise.resolve(b) : Promise.reject(new Error('missing ' + tilePath(t)));
  };

  async append(entries: (Uint8Array | string)[]): Promise<void> {
    const r = await integrate({ oldSize: this.size, readTile: this.readTile, entries: entries.map((e) => (typeof e === 'string' ? utf8(e) : e)) });
    for (const w of r.tiles) this.files.set(tilePath(w.tile), w.data);
    this.size = r.size;
    this.root = r.root;
  }

  async publish(extraSignatures: (text: Uint8Array) => Promise<string> = () => Promise.resolve('')): Promise<string> {
    let note = await signCheckpoint({ origin: this.origin, size: this.size, rootHash: this.root, extensions: [] }, [this.signer]);
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    note += await extraSignatures(utf8(text));
    this.files.set('checkpoint', utf8(note));
    return note;
  }

  source(): LogSource {
    return mapLogSource(this.files);
  }
}
