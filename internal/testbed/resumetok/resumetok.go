// Package resumetok builds receive_resume_tokens in OpenZFS's real format
// (a little-endian native nvlist, zlib-compressed, with the Fletcher-4
// first word as checksum: what zfsexec.DecodeResumeToken reads), for tests
// that need a token naming a given snapshot without an OpenZFS node.
package resumetok

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// nvpair data types used by tokens.
const (
	typeUint64 = 8
	typeString = 9
)

// Encode returns a version-1 token for a send of toname (toguid),
// incremental from fromguid when it is non-zero.
func Encode(toname string, toguid, fromguid uint64) string {
	nv := []byte{0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	pair := func(name string, typ uint32, val []byte) {
		hdr := (16 + len(name) + 1 + 7) &^ 7
		size := hdr + (len(val)+7)&^7
		p := make([]byte, size)
		binary.LittleEndian.PutUint32(p, uint32(size))
		binary.LittleEndian.PutUint16(p[4:], uint16(len(name)+1))
		binary.LittleEndian.PutUint32(p[8:], 1)
		binary.LittleEndian.PutUint32(p[12:], typ)
		copy(p[16:], name)
		copy(p[hdr:], val)
		nv = append(nv, p...)
	}
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	if fromguid != 0 {
		pair("fromguid", typeUint64, u64(fromguid))
	}
	pair("object", typeUint64, u64(2))
	pair("offset", typeUint64, u64(1<<20))
	pair("bytes", typeUint64, u64(3<<20))
	pair("toguid", typeUint64, u64(toguid))
	pair("toname", typeString, append([]byte(toname), 0))
	nv = append(nv, 0, 0, 0, 0)
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	_, _ = w.Write(nv)
	_ = w.Close()
	var sum uint64
	for i := 0; i+4 <= z.Len(); i += 4 {
		sum += uint64(binary.LittleEndian.Uint32(z.Bytes()[i:]))
	}
	return fmt.Sprintf("1-%x-%x-%s", sum, len(nv), hex.EncodeToString(z.Bytes()))
}
