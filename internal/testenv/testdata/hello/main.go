// Command hello is the main package that testenv's BuildBinary test builds.
package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("hello", len(os.Args)-1) }
