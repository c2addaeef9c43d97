package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	cases := []Message{
		{Kind: KindNotify, Method: "ready"},
		{Kind: KindNotify, Method: "heartbeat", Body: []byte(`{"requests":3}`)},
		{Kind: KindRequest, ID: 1<<64 - 1, Method: "store.get", Body: []byte(`{"key":"k"}`)},
		{Kind: KindReply, ID: 7, Err: "store: boom"},
		{Kind: KindReply, ID: 8, Body: bytes.Repeat([]byte("x"), 70000)},
		{Kind: KindRequest, ID: 9, Method: "store.set", Body: []byte(`{"key":"k"}`), Data: []byte{0, 1, 0xff, '"'}},
		{Kind: KindReply, ID: 10, Data: []byte{}}, // empty, but present
		{Kind: KindReply, ID: 11, Err: "e", Data: bytes.Repeat([]byte{0}, 70000)},
	}
	for _, want := range cases {
		buf, err := AppendFrame(nil, want)
		if err != nil {
			t.Fatalf("AppendFrame(%+v): %v", want.Method, err)
		}
		got, _, err := ReadFrame(bytes.NewReader(buf), nil)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		if len(got.Body) == 0 {
			got.Body = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip: got %+v, want %+v", got, want)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	valid, _ := AppendFrame(nil, Message{Kind: KindRequest, ID: 1, Method: "m", Err: "e", Body: []byte("{}")})
	payload := valid[4:]
	mutate := func(f func(p []byte) []byte) []byte {
		return f(append([]byte(nil), payload...))
	}
	cases := map[string][]byte{
		"empty":                     {},
		"short header":              payload[:5],
		"bad version":               mutate(func(p []byte) []byte { p[0] = 9; return p }),
		"kind zero":                 mutate(func(p []byte) []byte { p[1] = 0; return p }),
		"unknown kind":              mutate(func(p []byte) []byte { p[1] = 200; return p }),
		"method past end":           mutate(func(p []byte) []byte { p[10] = 255; return p }),
		"error past end":            mutate(func(p []byte) []byte { binary.BigEndian.PutUint16(p[12:], 60000); return p }),
		"truncated in error":        payload[:13],
		"data flag, no body length": mutate(func(p []byte) []byte { p[1] |= 0x80; return p[:len(p)-2] }),
		"data flag, body past end":  mutate(func(p []byte) []byte { p[1] |= 0x80; binary.BigEndian.PutUint32(p[len(p)-4:], 1<<31); return p }),
	}
	for name, p := range cases {
		if _, err := Decode(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode error = %v, want ErrMalformed", name, err)
		}
	}
}

func TestReadFrameLimits(t *testing.T) {
	var huge [4]byte
	binary.BigEndian.PutUint32(huge[:], MaxFrame+1)
	if _, _, err := ReadFrame(bytes.NewReader(huge[:]), nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized length: got %v, want ErrFrameTooLarge", err)
	}
	valid, _ := AppendFrame(nil, Message{Kind: KindNotify, Method: "ready", Body: []byte("{}")})
	if _, _, err := ReadFrame(bytes.NewReader(valid[:len(valid)-1]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: got %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(nil), nil); !errors.Is(err, io.EOF) {
		t.Errorf("clean end: got %v, want io.EOF", err)
	}
	if _, err := AppendFrame(nil, Message{Kind: KindNotify, Body: make([]byte, MaxFrame)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("AppendFrame of an oversized body: got %v, want ErrFrameTooLarge", err)
	}
	if _, err := AppendFrame(nil, Message{Kind: KindNotify, Method: strings.Repeat("m", 256)}); err == nil {
		t.Error("AppendFrame accepted a 256-byte method name")
	}
}

// FuzzDecode: no input makes the decoder panic or read past its input, and
// whatever it accepts re-encodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		{Kind: KindNotify, Method: "heartbeat", Body: []byte(`{"requests":1}`)},
		{Kind: KindRequest, ID: 42, Method: "store.set", Body: []byte(`{"key":"a","value":"Yg=="}`)},
		{Kind: KindReply, ID: 42, Err: "nope"},
		{Kind: KindRequest, ID: 43, Method: "store.set", Body: []byte(`{"key":"a"}`), Data: []byte{0, 0xff, 'b'}},
		{Kind: KindReply, ID: 43, Body: []byte(`{"found":true}`), Data: []byte{}},
		{Kind: KindReply, ID: 44, Err: "no", Data: []byte("x")},
	} {
		b, _ := AppendFrame(nil, m)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 1, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := ReadFrame(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		again, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		m2, _, err := ReadFrame(bytes.NewReader(again), nil)
		if err != nil || m2.Kind != m.Kind || m2.ID != m.ID || m2.Method != m.Method || m2.Err != m.Err || !bytes.Equal(m2.Body, m.Body) ||
			!bytes.Equal(m2.Data, m.Data) || (m2.Data == nil) != (m.Data == nil) {
			t.Fatalf("re-encoded message differs: %+v vs %+v (%v)", m2, m, err)
		}
	})
}
