package ipc

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// dataEcho answers requests with data: "rev" with the data reversed and
// the body's length, "fail" with an error (whose reply carries no data).
type dataEcho struct{ echo }

func (d *dataEcho) HandleDataRequest(ctx context.Context, method string, body, data []byte) (any, []byte, error) {
	switch method {
	case "rev":
		out := make([]byte, len(data))
		for i, b := range data {
			out[len(data)-1-i] = b
		}
		return map[string]int{"body": len(body)}, out, nil
	case "nodata":
		return map[string]int{"n": len(data)}, nil, nil
	}
	return nil, []byte("dropped"), errors.New("no such data method")
}

func TestCallDataCarriesBytes(t *testing.T) {
	a, _ := pair(t, &echo{}, &dataEcho{})
	ctx := context.Background()
	var resp map[string]int
	in := []byte{0, 1, 2, 0xff, '"', '\\'}
	got, err := a.CallData(ctx, "rev", map[string]string{"k": "v"}, in, &resp)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{'\\', '"', 0xff, 2, 1, 0}; !bytes.Equal(got, want) || resp["body"] != len(`{"k":"v"}`) {
		t.Errorf("rev: data %v, body %v; want %v and the request's JSON length", got, resp, want)
	}
	// Empty data is data; a reply without data returns nil.
	resp = nil
	got, err = a.CallData(ctx, "nodata", nil, nil, &resp)
	if err != nil || got != nil || resp["n"] != 0 {
		t.Errorf("nodata: %v, %v, %v; want nil data and n 0", got, resp, err)
	}
	var rerr *RemoteError
	if got, err = a.CallData(ctx, "other", nil, []byte("x"), nil); !errors.As(err, &rerr) || got != nil {
		t.Errorf("failing handler: %v, %v; want a RemoteError and no data", got, err)
	}
	// A request without data still goes to HandleRequest.
	var echoed map[string]string
	if err := a.Call(ctx, "echo", map[string]string{"a": "b"}, &echoed); err != nil || echoed["a"] != "b" {
		t.Errorf("plain Call to a DataHandler: %v, %v", echoed, err)
	}
}

// A Handler that does not answer data requests refuses them rather than
// drop the bytes.
func TestCallDataToPlainHandler(t *testing.T) {
	a, _ := pair(t, &echo{}, &echo{})
	var rerr *RemoteError
	got, err := a.CallData(context.Background(), "echo", map[string]string{"a": "b"}, []byte("v"), nil)
	if !errors.As(err, &rerr) || got != nil {
		t.Errorf("CallData to a plain Handler: %v, %v; want a RemoteError", got, err)
	}
}
