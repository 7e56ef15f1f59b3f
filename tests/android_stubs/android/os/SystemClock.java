package android.os;

public final class SystemClock {
    public static long elapsedRealtime() { throw new RuntimeException("Stub!"); }
    public static long elapsedRealtimeNanos() { throw new RuntimeException("Stub!"); }
}
