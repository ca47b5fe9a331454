// Command go-tlog independently verifies a Custody transparency log with Go's
// golang.org/x/mod/sumdb/note and sumdb/tlog (Debian golang-golang-x-mod-dev 0.7.0):
// checkpoint note signatures (and cosignature/v1 witness cosignatures), the tiles (C2SP
// tlog-tiles paths mapped onto x/mod's tile/H/L/N layout), every entry bundle, and the
// inclusion and consistency proofs Custody produced, which must also equal the proofs x/mod
// computes from the same tiles.
//
// Build: GO111MODULE=off GOPATH=/usr/share/gocode go build -o go-tlog .
// Usage: go-tlog -dir <log dir> -vkey <log vkey> [-wvkey <witness vkey>] -proofs <proofs.json>
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

type inclusion struct {
	Index int64    `json:"index"`
	Proof []string `json:"proof"`
}

type proofs struct {
	OldCheckpoint string      `json:"oldCheckpoint"`
	Inclusion     []inclusion `json:"inclusion"`
	Consistency   []string    `json:"consistency"`
}

type checkpoint struct {
	origin string
	tree   tlog.Tree
}

// cosigV1 verifies C2SP tlog-cosignature cosignature/v1 (signature type 0x04) lines.
type cosigV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigV1) Name() string    { return v.name }
func (v *cosigV1) KeyHash() uint32 { return v.hash }
func (v *cosigV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

func newCosigVerifier(vkey string) (*cosigV1, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed witness vkey")
	}
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		return nil, errors.New("witness vkey is not a cosignature/v1 Ed25519 key")
	}
	sum := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	if binary.BigEndian.Uint32(sum[:4]) != uint32(h) {
		return nil, errors.New("witness vkey hash mismatch")
	}
	return &cosigV1{name: parts[0], hash: uint32(h), key: ed25519.PublicKey(raw[1:])}, nil
}

// parseCheckpoint reads the C2SP body's first three lines itself: x/mod 0.7.0's
// tlog.ParseTree expects the older go.sum "go.sum database tree" header.
func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, errors.New("checkpoint body has fewer than three lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return checkpoint{}, errors.New("bad tree size line")
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, err
	}
	return checkpoint{origin: lines[0], tree: tlog.Tree{N: n, Hash: h}}, nil
}

func openCheckpoint(msg []byte, verifiers note.Verifiers, wantWitness string) (checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return checkpoint{}, err
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return checkpoint{}, err
	}
	logSigned, witnessSigned := false, false
	for _, s := range n.Sigs {
		if s.Name == cp.origin {
			logSigned = true
		}
		if s.Name == wantWitness {
			witnessSigned = true
		}
	}
	if !logSigned {
		return checkpoint{}, errors.New("checkpoint is not signed by the log key named after its origin")
	}
	if wantWitness != "" && !witnessSigned {
		return checkpoint{}, errors.New("checkpoint has no valid witness cosignature")
	}
	return cp, nil
}

// dirTiles serves x/mod tiles from a C2SP tlog-tiles directory:
// tile/8/L/N -> tile/L/N and tile/8/data/N -> tile/entries/N.
type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return tileHeight }

func c2spPath(t tlog.Tile) string {
	p := t.Path() // tile/8/<L|data>/<N>[.p/<W>]
	p = strings.TrimPrefix(p, fmt.Sprintf("tile/%d/", tileHeight))
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(d.dir, c2spPath(t)))
		if err != nil {
			// A partial tile may be gone once the full tile exists; its prefix is the same.
			full := t
			full.W = 1 << tileHeight
			fb, ferr := os.ReadFile(filepath.Join(d.dir, c2spPath(full)))
			if ferr != nil {
				return nil, err
			}
			b = fb[:t.W*tlog.HashSize]
		}
		out[i] = b
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func decodeHashes(b64 []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// readBundle parses a C2SP entry bundle: big-endian uint16 length-prefixed entries.
func readBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("truncated entry length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("truncated entry")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, nil
}

func run() error {
	dir := flag.String("dir", "", "log directory")
	vkey := flag.String("vkey", "", "log verifier key")
	wvkey := flag.String("wvkey", "", "witness verifier key (cosignature/v1)")
	proofsFile := flag.String("proofs", "", "JSON file with Custody's proofs")
	flag.Parse()

	logV, err := note.NewVerifier(*vkey)
	if err != nil {
		return fmt.Errorf("log vkey: %v", err)
	}
	verifiers := []note.Verifier{logV}
	witnessName := ""
	if *wvkey != "" {
		w, err := newCosigVerifier(*wvkey)
		if err != nil {
			return err
		}
		verifiers = append(verifiers, w)
		witnessName = w.name
	}
	known := note.VerifierList(verifiers...)

	msg, err := os.ReadFile(filepath.Join(*dir, "checkpoint"))
	if err != nil {
		return err
	}
	cp, err := openCheckpoint(msg, known, witnessName)
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	fmt.Printf("ok checkpoint %s size %d signed by the log%s\n", cp.origin, cp.tree.N, map[bool]string{true: " and cosigned by " + witnessName, false: ""}[witnessName != ""])

	// Tiles: x/mod verifies every tile it loads against the signed tree hash.
	hr := tlog.TileHashReader(cp.tree, dirTiles{*dir})
	root, err := tlog.TreeHash(cp.tree.N, hr)
	if err != nil {
		return fmt.Errorf("tiles: %v", err)
	}
	if root != cp.tree.Hash {
		return errors.New("tiles: tree hash does not match the checkpoint")
	}
	fmt.Printf("ok tiles hash to the checkpoint root\n")

	// Every entry in every bundle hashes to its leaf in the (verified) level-0 tiles.
	for start := int64(0); start < cp.tree.N; start += 1 << tileHeight {
		w := cp.tree.N - start
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		data, err := dirTiles{*dir}.ReadTiles([]tlog.Tile{{H: tileHeight, L: -1, N: start >> tileHeight, W: int(w)}})
		if err != nil {
			return fmt.Errorf("entry bundle: %v", err)
		}
		entries, err := readBundle(data[0])
		if err != nil || int64(len(entries)) != w {
			return fmt.Errorf("entry bundle at %d: %v (%d entries)", start, err, len(entries))
		}
		idx := make([]int64, w)
		for i := range idx {
			idx[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := hr.ReadHashes(idx)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != leaves[i] {
				return fmt.Errorf("entry %d does not hash to its tile leaf", start+int64(i))
			}
		}
	}
	fmt.Printf("ok %d entries match the tiles\n", cp.tree.N)

	raw, err := os.ReadFile(*proofsFile)
	if err != nil {
		return err
	}
	var p proofs
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	for _, inc := range p.Inclusion {
		proof, err := decodeHashes(inc.Proof)
		if err != nil {
			return err
		}
		leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, inc.Index)})
		if err != nil {
			return err
		}
		if err := tlog.CheckRecord(tlog.RecordProof(proof), cp.tree.N, cp.tree.Hash, inc.Index, leaf[0]); err != nil {
			return fmt.Errorf("inclusion of %d: %v", inc.Index, err)
		}
		mine, err := tlog.ProveRecord(cp.tree.N, inc.Index, hr)
		if err != nil {
			return err
		}
		if !equalProofs(mine, proof) {
			return fmt.Errorf("inclusion of %d: Custody's proof differs from x/mod's", inc.Index)
		}
	}
	fmt.Printf("ok %d inclusion proofs verify and equal x/mod's\n", len(p.Inclusion))

	if p.OldCheckpoint != "" {
		old, err := openCheckpoint([]byte(p.OldCheckpoint), known, "")
		if err != nil {
			return fmt.Errorf("old checkpoint: %v", err)
		}
		proof, err := decodeHashes(p.Consistency)
		if err != nil {
			return err
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), cp.tree.N, cp.tree.Hash, old.tree.N, old.tree.Hash); err != nil {
			return fmt.Errorf("consistency %d -> %d: %v", old.tree.N, cp.tree.N, err)
		}
		mine, err := tlog.ProveTree(cp.tree.N, old.tree.N, hr)
		if err != nil {
			return err
		}
		if !equalProofs(mine, proof) {
			return errors.New("consistency: Custody's proof differs from x/mod's")
		}
		fmt.Printf("ok consistency %d -> %d verifies and equals x/mod's\n", old.tree.N, cp.tree.N)
	}
	return nil
}

func equalProofs(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i][:], b[i][:]) {
			return false
		}
	}
	return true
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}
