// Package ipc carries messages between herd's primary and its workers over a
// socketpair: length-prefixed, versioned frames, each a notification, a
// request or the reply to one. Decoding rejects any malformed input with an
// error; it never panics and never reads past a frame's declared length.
package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the frame format this package writes and accepts.
const Version = 1

// MaxFrame bounds the size of one frame after its length prefix. A larger
// length is rejected before anything is allocated.
const MaxFrame = 4 << 20

// Kind says what a frame carries.
type Kind uint8

const (
	KindNotify  Kind = 1 // one-way message: ready, heartbeat, drain
	KindRequest Kind = 2 // expects a KindReply with the same ID
	KindReply   Kind = 3 // answers the KindRequest with the same ID
)

// flagData, set in a frame's kind byte, says the frame carries Data after
// its Body: Body is then preceded by its length (u32).
const flagData = 0x80

// Message is one decoded frame.
type Message struct {
	Kind   Kind
	ID     uint64 // matches a reply to its request; 0 for notifications
	Method string // what the notification or request is about; empty in replies
	Err    string // a reply's error text; empty on success
	Body   []byte // JSON payload, may be empty
	// Data is an opaque byte payload beside Body (a stored value), sent
	// as it is rather than base64 inside JSON. Nil: the frame has none.
	// A frame without Data is encoded exactly as before Data existed.
	Data []byte
}

// Frame layout after the 4-byte big-endian length prefix:
//
//	version u8 | kind u8 | id u64 | len(method) u8 | method | len(err) u16 | err | body
//
// and, when the kind byte has flagData (0x80) set:
//
//	version u8 | kind u8 | id u64 | len(method) u8 | method | len(err) u16 | err | len(body) u32 | body | data
const headerLen = 1 + 1 + 8 + 1 + 2

var (
	// ErrFrameTooLarge means a frame's declared length exceeds MaxFrame.
	ErrFrameTooLarge = errors.New("ipc: frame too large")
	// ErrMalformed means a frame's contents do not follow the format.
	ErrMalformed = errors.New("ipc: malformed frame")
)

// AppendFrame appends m, length prefix included, to buf.
func AppendFrame(buf []byte, m Message) ([]byte, error) {
	if len(m.Method) > 255 {
		return buf, fmt.Errorf("ipc: method name %q longer than 255 bytes", m.Method[:32])
	}
	if len(m.Err) > 65535 {
		m.Err = m.Err[:65535]
	}
	n := headerLen + len(m.Method) + len(m.Err) + len(m.Body)
	kind := byte(m.Kind)
	if m.Data != nil {
		n += 4 + len(m.Data)
		kind |= flagData
	}
	if n > MaxFrame {
		return buf, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, MaxFrame)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(n)) //nolint:gosec // G115: n <= MaxFrame
	buf = append(buf, Version, kind)
	buf = binary.BigEndian.AppendUint64(buf, m.ID)
	buf = append(buf, byte(len(m.Method))) //nolint:gosec // G115: checked <= 255 above
	buf = append(buf, m.Method...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(m.Err))) //nolint:gosec // G115: truncated to 65535 above
	buf = append(buf, m.Err...)
	if m.Data != nil {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(m.Body))) //nolint:gosec // G115: len(Body) < n <= MaxFrame
		buf = append(buf, m.Body...)
		return append(buf, m.Data...), nil
	}
	buf = append(buf, m.Body...)
	return buf, nil
}

// Decode parses one frame's contents (without its length prefix).
// The returned Message's Body and Data alias p; Data is non-nil (maybe
// empty) exactly when the frame carries it.
func Decode(p []byte) (Message, error) {
	var m Message
	if len(p) < headerLen {
		return m, fmt.Errorf("%w: %d bytes is shorter than a header", ErrMalformed, len(p))
	}
	if p[0] != Version {
		return m, fmt.Errorf("%w: version %d, want %d", ErrMalformed, p[0], Version)
	}
	m.Kind = Kind(p[1] &^ flagData)
	hasData := p[1]&flagData != 0
	if m.Kind < KindNotify || m.Kind > KindReply {
		return m, fmt.Errorf("%w: unknown kind %d", ErrMalformed, p[1])
	}
	m.ID = binary.BigEndian.Uint64(p[2:10])
	p = p[10:]
	ml := int(p[0])
	p = p[1:]
	if len(p) < ml+2 {
		return m, fmt.Errorf("%w: method length %d past the end", ErrMalformed, ml)
	}
	m.Method = string(p[:ml])
	p = p[ml:]
	el := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if len(p) < el {
		return m, fmt.Errorf("%w: error length %d past the end", ErrMalformed, el)
	}
	m.Err = string(p[:el])
	p = p[el:]
	if !hasData {
		m.Body = p
		return m, nil
	}
	if len(p) < 4 {
		return m, fmt.Errorf("%w: body length past the end", ErrMalformed)
	}
	bl := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(len(p)) < uint64(bl) {
		return m, fmt.Errorf("%w: body length %d past the end", ErrMalformed, bl)
	}
	m.Body, m.Data = p[:bl:bl], p[bl:]
	return m, nil
}

// ReadFrame reads one length-prefixed frame from r into buf (grown as
// needed) and decodes it. io.EOF means the peer closed cleanly between
// frames; io.ErrUnexpectedEOF means it closed inside one.
func ReadFrame(r io.Reader, buf []byte) (Message, []byte, error) {
	var lenb [4]byte
	if _, err := io.ReadFull(r, lenb[:]); err != nil {
		return Message{}, buf, err
	}
	n := binary.BigEndian.Uint32(lenb[:])
	if n > MaxFrame {
		return Message{}, buf, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, MaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, buf, err
	}
	m, err := Decode(buf)
	return m, buf, err
}
