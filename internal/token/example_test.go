package token_test

import (
	"fmt"

	"secondopinion/internal/token"
)

func ExampleNew() {
	key := []byte("example key: load the real one from the key file")
	tok := token.New(key, token.Claims{CaseID: 42, Question: 3, Role: token.RoleEmployee})
	addr := token.Address("secondopinion", "example.nl", tok)

	// The reply comes back, its local part folded to upper case on the way.
	got, ok := token.FromAddress("SECONDOPINION+"+tok+"@Example.NL", "secondopinion", "example.nl")
	c, err := token.Verify(key, got)
	fmt.Println(addr == "secondopinion+"+tok+"@example.nl", ok, err)
	fmt.Printf("case %d, question %d, %s\n", c.CaseID, c.Question, c.Role)
	// Output:
	// true true <nil>
	// case 42, question 3, employee
}

func ExampleVerify() {
	key := []byte("example key: load the real one from the key file")
	tok := token.New(key, token.Claims{CaseID: 42, Question: 3, Role: token.RoleEmployer})
	_, err := token.Verify([]byte("some other key"), tok)
	fmt.Println(err)
	// Output: token: bad reply token
}
