// tlogcheck: checks a Sluice strand's proofs, tiles and signed checkpoints with the Go
// project's transparency-log code (golang.org/x/mod/sumdb/tlog and sumdb/note), which Sluice
// does not share a line with. Built by tests/integration/test_proofs.py (GOPATH mode, offline).
//
// Input (-in FILE, JSON): {"url", "strand", "vkey", "skey_file", "checkpoints": [note text...],
// "leaves": {"<index>": "<record_hash hex>"}, "all": bool, "samples": N, "seed": N}.
// Every checked fact prints "ok - ..." or "not ok - ..." (the test harness counts them).
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	URL         string            `json:"url"`
	Strand      string            `json:"strand"`
	VKey        string            `json:"vkey"`
	SKeyFile    string            `json:"skey_file"`
	Checkpoints []string          `json:"checkpoints"`
	Leaves      map[string]string `json:"leaves"`
	All         bool              `json:"all"`
	Samples     int               `json:"samples"`
	Seed        int64             `json:"seed"`
}

type checkpoint struct {
	origin string
	tree   tlog.Tree
}

var (
	client = &http.Client{}
	base   string
	failed int
)

func check(ok bool, format string, args ...interface{}) {
	if ok {
		fmt.Printf("ok - "+format+"\n", args...)
	} else {
		failed++
		fmt.Printf("not ok - "+format+"\n", args...)
	}
}

func get(path string) ([]byte, int, error) {
	resp, err := client.Get(base + path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func hashes(path string) ([]tlog.Hash, error) {
	b, code, err := get(path)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("%s: HTTP %d: %s", path, code, b)
	}
	var r struct {
		Hashes []string `json:"hashes"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(r.Hashes))
	for i, s := range r.Hashes {
		if out[i], err = parseHex(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseHex(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// parseCheckpoint reads the C2SP tlog-checkpoint body of a note opened by note.Open.
func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, fmt.Errorf("checkpoint has fewer than three lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return checkpoint{}, err
	}
	h, err := tlog.ParseHash(lines[2]) // base64, as in the checkpoint
	if err != nil {
		return checkpoint{}, err
	}
	return checkpoint{origin: lines[0], tree: tlog.Tree{N: n, Hash: h}}, nil
}

// tileReader fetches C2SP tlog-tiles paths: tile/<L>/<N>[.p/<W>] (the Go paths without H).
type tileReader struct{ fetched int }

func (r *tileReader) Height() int                                { return 8 }
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := strings.TrimPrefix(t.Path(), "tile/8/")
		b, code, err := get("/v1/strands/" + in.Strand + "/tile/" + p)
		if err != nil {
			return nil, err
		}
		if code != 200 || len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s: HTTP %d, %d bytes", p, code, len(b))
		}
		out[i] = b
		r.fetched++
	}
	return out, nil
}

var in input

func main() {
	inPath := flag.String("in", "", "input JSON")
	flag.Parse()
	raw, err := os.ReadFile(*inPath)
	if err == nil {
		err = json.Unmarshal(raw, &in)
	}
	if err != nil {
		fmt.Println("not ok - read input:", err)
		os.Exit(1)
	}
	base = strings.TrimRight(in.URL, "/")
	rng := rand.New(rand.NewSource(in.Seed))

	v, err := note.NewVerifier(in.VKey)
	check(err == nil, "note.NewVerifier accepts the verifier key %q (%v)", in.VKey, err)
	if err != nil {
		os.Exit(1)
	}
	if in.SKeyFile != "" {
		skey, _ := os.ReadFile(in.SKeyFile)
		s, err := note.NewSigner(strings.TrimSpace(string(skey)))
		check(err == nil && s.Name() == v.Name() && s.KeyHash() == v.KeyHash(),
			"note.NewSigner reads the server's key file and it matches the verifier key (%v)", err)
	}
	verifiers := note.VerifierList(v)

	var cps []checkpoint
	openOK := true
	for _, text := range in.Checkpoints {
		n, err := note.Open([]byte(text), verifiers)
		if err != nil {
			openOK = false
			fmt.Printf("# note.Open: %v\n%s\n", err, text)
			continue
		}
		cp, err := parseCheckpoint(n.Text)
		if err != nil {
			openOK = false
			fmt.Printf("# checkpoint: %v\n", err)
			continue
		}
		cps = append(cps, cp)
	}
	check(openOK && len(cps) == len(in.Checkpoints),
		"note.Open verifies the signature of all %d checkpoints and their bodies parse", len(in.Checkpoints))
	sort.Slice(cps, func(i, j int) bool { return cps[i].tree.N < cps[j].tree.N })

	leaves := map[int64]tlog.Hash{}
	for k, s := range in.Leaves {
		i, _ := strconv.ParseInt(k, 10, 64)
		if leaves[i], err = parseHex(s); err != nil {
			check(false, "leaf %s: %v", k, err)
		}
	}

	// inclusion: every known leaf of every tree (all), or samples per tree
	incl, inclBad := 0, 0
	for _, cp := range cps {
		var idx []int64
		if in.All {
			for i := int64(0); i < cp.tree.N; i++ {
				idx = append(idx, i)
			}
		} else { // a sample of the leaves whose hashes the test knows
			var known []int64
			for i := range leaves {
				if i < cp.tree.N {
					known = append(known, i)
				}
			}
			sort.Slice(known, func(a, b int) bool { return known[a] < known[b] })
			rng.Shuffle(len(known), func(a, b int) { known[a], known[b] = known[b], known[a] })
			if len(known) > in.Samples {
				known = known[:in.Samples]
			}
			idx = known
		}
		for _, i := range idx {
			leaf, ok := leaves[i]
			if !ok {
				continue
			}
			p, err := hashes(fmt.Sprintf("/v1/strands/%s/proof/inclusion?seq=%d&tree_size=%d", in.Strand, i, cp.tree.N))
			if err == nil {
				err = tlog.CheckRecord(tlog.RecordProof(p), cp.tree.N, cp.tree.Hash, i, leaf)
			}
			incl++
			if err != nil {
				inclBad++
				if inclBad < 5 {
					fmt.Printf("# inclusion of %d in %d: %v\n", i, cp.tree.N, err)
				}
			}
		}
	}
	check(incl > 0 && inclBad == 0, "tlog.CheckRecord accepts %d inclusion proofs from the server (%d rejected)", incl, inclBad)

	// consistency: every pair of checkpoints (all), or samples of pairs
	cons, consBad := 0, 0
	for a := 0; a < len(cps); a++ {
		for b := a; b < len(cps); b++ {
			if !in.All && rng.Intn(len(cps)) > in.Samples {
				continue
			}
			m, n := cps[a].tree, cps[b].tree
			p, err := hashes(fmt.Sprintf("/v1/strands/%s/proof/consistency?from=%d&to=%d", in.Strand, m.N, n.N))
			if err == nil {
				err = tlog.CheckTree(tlog.TreeProof(p), n.N, n.Hash, m.N, m.Hash)
			}
			cons++
			if err != nil {
				consBad++
				if consBad < 5 {
					fmt.Printf("# consistency %d -> %d: %v\n", m.N, n.N, err)
				}
			}
		}
	}
	check(cons > 0 && consBad == 0, "tlog.CheckTree accepts %d consistency proofs between signed checkpoints (%d rejected)", cons, consBad)

	// tiles: the tree hash recomputed from the served tiles (TileHashReader authenticates
	// them against the signed root), and proofs built by tlog from tiles equal the server's
	tr := &tileReader{}
	tilesOK, tileProofs := 0, 0
	for k, cp := range cps {
		if !in.All && k%3 != 0 && k != len(cps)-1 {
			continue
		}
		thr := tlog.TileHashReader(cp.tree, tr)
		th, err := tlog.TreeHash(cp.tree.N, thr)
		if err != nil || th != cp.tree.Hash {
			fmt.Printf("# tree hash of %d from tiles: %v\n", cp.tree.N, err)
			continue
		}
		i := rng.Int63n(cp.tree.N)
		rp, err := tlog.ProveRecord(cp.tree.N, i, thr)
		if err == nil {
			var sp []tlog.Hash
			sp, err = hashes(fmt.Sprintf("/v1/strands/%s/proof/inclusion?seq=%d&tree_size=%d", in.Strand, i, cp.tree.N))
			if err == nil && fmt.Sprint(sp) != fmt.Sprint([]tlog.Hash(rp)) {
				err = fmt.Errorf("the server's proof differs from the one built from tiles")
			}
		}
		if err != nil {
			fmt.Printf("# proof of %d in %d from tiles: %v\n", i, cp.tree.N, err)
			continue
		}
		tilesOK++
		tileProofs++
	}
	want := 0
	for k := range cps {
		if in.All || k%3 == 0 || k == len(cps)-1 {
			want++
		}
	}
	check(tilesOK == want && want > 0,
		"tlog.TileHashReader: %d trees rebuilt from %d served tiles match their signed roots, and tlog.ProveRecord over the tiles gives the server's proofs (%d/%d)",
		tilesOK, tr.fetched, tileProofs, want)
	if failed > 0 {
		os.Exit(1)
	}
}
