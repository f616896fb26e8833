package cep

import (
	"encoding/binary"
	"unsafe"
)

// A partition's instances live in an arena: chunks of bytes that hold no pointers, each cut into
// blocks of one size class, so the collector marks a chunk as one object and never looks into
// it. With a slot object per instance, a collection of a replica holding a few million instances
// marked every slot and followed every pointer to it (the index's, the expiry lists', a snapshot
// run's): half a second of mark phase on a 1.4 GB heap, the stage's latency tail, and 5-15% of
// its CPU. The arena's blocks are found by ref, an index into it, which the index, the lists and
// the runs hold instead of pointers; a released block is reused for the next instance of its
// class, so the state's memory is the peak of what it held, not a collector's multiple of it.
//
// A block is a 12-byte header (the bytes used after it, the key's length, flags, the size class)
// then the instance's key and its encoding (codec.go). An instance that outgrows its block moves
// to a block of a larger class (a new ref; the index follows). A ref held elsewhere may therefore
// name a block released since, or reused by another instance: live tells the first, and every
// holder acts only on what the block it names holds now (a commit writes the instance there, a
// sweep drops it when it has expired, a snapshot copies it), which is right for whichever
// instance that is. The holders that keep a key past the block (timers, fan-out jobs) copy it.

// ref names a block: its chunk (from 1) in the top 24 bits, the block's generation in the next
// 16, its offset in the low 24. 0 is none. A block's generation moves on each time it is
// released, so a ref to a block released since (and perhaps reused) is told from the block's
// current ref (live). A holder whose ref is that stale skips it; a ref stale by exactly 65,536
// generations names the block's current instance, which the expiry lists' and snapshot runs' acts
// are right for too. The dirty list never holds one: a block an instance moves out of is retired,
// not released, until the commit has encoded the list (machine.write).
type ref uint64

func (r ref) chunk() uint64 { return uint64(r) >> 40 }
func (r ref) gen() uint16   { return uint16(r >> 24) }
func (r ref) off() uint32   { return uint32(r) & (1<<24 - 1) }

func mkRef(chunk int, gen uint16, off uint32) ref {
	if chunk >= 1<<24 {
		panic("cep: a partition's arena holds more than 16M chunks")
	}
	return ref(uint64(chunk)<<40 | uint64(gen)<<24 | uint64(off))
}

const (
	blockHdr  = 12 // used uint32, key length uint32, flags, class, generation uint16
	chunkSize = 1 << 20
	classHuge = 255 // a block larger than every class: a chunk of its own
	// Block flags: flagDirty marks an instance changed since the last commit; flagGone a block
	// dropped from the index (its key kept for the commit that deletes it); flagFree a block
	// released to its class.
	flagDirty = 1
	flagGone  = 2
	flagFree  = 4
)

// blockSizes are the size classes, header included: steps of 16 bytes where instances are, then
// about a quarter apart.
var blockSizes = [...]uint32{48, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024,
	1280, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768, 65536}

// classBy16 is the class of a block of up to 1024 bytes, by its size in 16-byte steps.
var classBy16 = func() (t [1024/16 + 1]uint8) {
	c := 0
	for i := range t {
		for blockSizes[c] < uint32(i*16) {
			c++
		}
		t[i] = uint8(c)
	}
	return t
}()

// classFor is the size class of a block of n bytes, -1 for one larger than every class.
func classFor(n int) int {
	if n <= 1024 {
		return int(classBy16[(n+15)/16])
	}
	for c := int(classBy16[1024/16]); c < len(blockSizes); c++ {
		if int(blockSizes[c]) >= n {
			return c
		}
	}
	return -1
}

type arena struct {
	chunks [][]byte // chunk 0 is never used, so no ref is 0; a huge block's is nil once released
	free   [len(blockSizes)][]ref
	// hugeFree are the chunk numbers of released huge blocks, each with its next generation.
	hugeFree []ref
	next     [len(blockSizes)]ref // the class's first block never used, in its newest chunk (0: none)
	held     int64                // bytes of the chunks
}

func newArena() *arena { return &arena{chunks: [][]byte{nil}} }

// alloc returns a block with room for n bytes of key and encoding, its header zero but for its
// class and generation.
func (a *arena) alloc(n int) ref {
	size := blockHdr + n
	c := classFor(size)
	if c < 0 {
		// A chunk of its own, a quarter larger than asked (an instance this large grows by a
		// few dozen bytes an event: it moves once in a while, not at every event).
		b := make([]byte, size+size/4)
		b[9] = classHuge
		a.held += int64(len(b))
		if n := len(a.hugeFree); n > 0 {
			r := a.hugeFree[n-1]
			a.hugeFree = a.hugeFree[:n-1]
			binary.LittleEndian.PutUint16(b[10:], r.gen())
			a.chunks[r.chunk()] = b
			return r
		}
		a.chunks = append(a.chunks, b)
		return mkRef(len(a.chunks)-1, 0, 0)
	}
	if fl := a.free[c]; len(fl) > 0 {
		r := fl[len(fl)-1]
		a.free[c] = fl[:len(fl)-1]
		clear(a.chunks[r.chunk()][r.off():][:9])
		return r
	}
	r := a.next[c]
	if r == 0 || r.off()+blockSizes[c] > chunkSize {
		a.chunks = append(a.chunks, make([]byte, chunkSize))
		a.held += chunkSize
		r = mkRef(len(a.chunks)-1, 0, 0)
	}
	a.next[c] = r + ref(blockSizes[c])
	a.chunks[r.chunk()][r.off()+9] = uint8(c)
	return r
}

// release gives a block back to its class, its generation moved on (a huge block's chunk to the
// collector).
func (a *arena) release(r ref) {
	ch := a.chunks[r.chunk()]
	off := r.off()
	c := ch[off+9]
	if c == classHuge {
		a.held -= int64(len(ch))
		a.chunks[r.chunk()] = nil
		a.hugeFree = append(a.hugeFree, mkRef(int(r.chunk()), r.gen()+1, 0))
		return
	}
	ch[off+8] = flagFree
	g := r.gen() + 1
	binary.LittleEndian.PutUint16(ch[off+10:], g)
	a.free[c] = append(a.free[c], mkRef(int(r.chunk()), g, off))
}

// inUse appends to out the refs of the blocks that hold an instance (neither released, retired
// nor dropped), in memory order: chunk by chunk, each chunk's blocks by offset. Read in this
// order, the blocks stream through the caches (the processor fetches ahead), where the index's
// order misses at every block: a snapshot copies them all.
func (a *arena) inUse(out []ref) []ref {
	for i := 1; i < len(a.chunks); i++ {
		ch := a.chunks[i]
		if ch == nil {
			continue
		}
		c := ch[9] // every chunk's first block is handed out when the chunk is made
		if c == classHuge {
			if ch[8]&(flagFree|flagGone) == 0 {
				out = append(out, mkRef(i, binary.LittleEndian.Uint16(ch[10:]), 0))
			}
			continue
		}
		size, end := blockSizes[c], uint32(chunkSize)
		if n := a.next[c]; n.chunk() == uint64(i) {
			end = n.off() // the class's newest chunk: its blocks from here on were never used
		}
		for off := uint32(0); off+size <= end; off += size {
			if ch[off+8]&(flagFree|flagGone) == 0 {
				out = append(out, mkRef(i, binary.LittleEndian.Uint16(ch[off+10:]), off))
			}
		}
	}
	return out
}

// live reports whether r is its block's current ref, the block in use.
func (a *arena) live(r ref) bool {
	ch := a.chunks[r.chunk()]
	if ch == nil {
		return false
	}
	off := r.off()
	return ch[off+8]&flagFree == 0 && binary.LittleEndian.Uint16(ch[off+10:]) == r.gen()
}

// current is r's block when r is its current ref (live), for a holder whose ref may be stale.
func (a *arena) current(r ref) (blk, bool) {
	if !a.live(r) {
		return nil, false
	}
	return a.blk(r), true
}

// blk is r's block (r current: a holder that may hold a stale ref asks live first).
func (a *arena) blk(r ref) blk {
	ch := a.chunks[r.chunk()]
	off := r.off()
	if c := ch[off+9]; c != classHuge {
		return blk(ch[off : off+blockSizes[c] : off+blockSizes[c]])
	}
	return blk(ch)
}

// blk is a block: its header, its key and its instance's encoding.
type blk []byte

func (b blk) used() int       { return int(binary.LittleEndian.Uint32(b[0:])) }
func (b blk) keyLen() int     { return int(binary.LittleEndian.Uint32(b[4:])) }
func (b blk) gone() bool      { return b[8]&flagGone != 0 }
func (b blk) dirty() bool     { return b[8]&flagDirty != 0 }
func (b blk) setFlags(f byte) { b[8] = f }

// key is the block's key, sharing its bytes: valid while the block holds this instance (a holder
// that keeps it longer copies it).
func (b blk) key() string {
	n := b.keyLen()
	if n == 0 {
		return ""
	}
	return unsafe.String(&b[blockHdr], n)
}

func (b blk) keyIs(key string) bool {
	n := b.keyLen()
	return n == len(key) && string(b[blockHdr:blockHdr+n]) == key
}

// raw is the block's encoded instance (empty for a dropped one).
func (b blk) raw() []byte { return b[blockHdr+b.keyLen() : blockHdr+b.used()] }

// setKey writes a new block's key (room checked by alloc).
func (b blk) setKey(key string) {
	copy(b[blockHdr:], key)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(key)))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(key)))
}

// setRaw writes the instance's encoding after the key; false when it does not fit.
func (b blk) setRaw(raw []byte) bool {
	k := b.keyLen()
	if blockHdr+k+len(raw) > len(b) {
		return false
	}
	copy(b[blockHdr+k:], raw)
	binary.LittleEndian.PutUint32(b[0:], uint32(k+len(raw)))
	return true
}
