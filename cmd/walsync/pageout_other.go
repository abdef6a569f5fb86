//go:build !linux

package main

func pageOutExecutable() {}
