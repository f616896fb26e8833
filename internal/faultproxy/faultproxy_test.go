package faultproxy_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/faultproxy"
)

// echo serves lines back.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestProxy(t *testing.T) {
	px, err := faultproxy.Start(echo(t))
	require.NoError(t, err)
	t.Cleanup(px.Close)
	require.NoError(t, roundTrip(px.Addr()))

	// A connection open across a Reset is cut.
	c, err := net.Dial("tcp", px.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("a\n"))
	require.NoError(t, err)
	r := bufio.NewReader(c)
	_, err = r.ReadString('\n')
	require.NoError(t, err)
	px.Reset()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("b\n"))
	_, err = r.ReadString('\n')
	require.Error(t, err, "cut by the reset")

	px.SetDown(true)
	require.Error(t, roundTrip(px.Addr()), "down")
	px.SetDown(false)
	require.NoError(t, roundTrip(px.Addr()), "back")

	px.SetFailRate(1)
	require.Error(t, roundTrip(px.Addr()), "every chunk fails")
	require.Positive(t, px.Cuts())
	px.SetFailRate(0)
	require.NoError(t, roundTrip(px.Addr()))

	px.SetFailEvery(3) // each round trip is two chunks: one of the next three round trips is cut
	failed := 0
	for range 3 {
		if roundTrip(px.Addr()) != nil {
			failed++
		}
	}
	require.Equal(t, 1, failed)
}
